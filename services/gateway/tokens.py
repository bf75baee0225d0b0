"""Signed, short-lived access tokens for staff and patrons (JWT, HS256), checked at the gateway on every
request; the role in the token decides which routes it opens.

A token ends before it expires when its holder's credentials are revoked (a staff account deleted or
changed, a PIN changed, a card reported lost): the patrons service broadcasts ``credentials_revoked`` to
every gateway process, which then refuses that holder's tokens issued before the revocation. Each process
also asks for the recent revocations when it starts and every minute, for a broadcast it missed.
"""
from datetime import timedelta

import jwt
from nameko.extensions import DependencyProvider, SharedExtension
from nameko.messaging import QueueConsumer
from nameko.timer import Timer

from shiori.clock import token_time
from shiori.errors import NotAuthenticated
from shiori.roles import PATRON

ISSUER = "shiori"
AUDIENCE = "shiori"
MIN_SECRET_LENGTH = 32


class TokenIssuer:
    def __init__(self, secret, lifetime_seconds):
        if len(secret or "") < MIN_SECRET_LENGTH:
            raise ValueError(f"SHIORI_TOKEN_SECRET must be set, at least {MIN_SECRET_LENGTH} characters")
        self.secret = secret
        self.lifetime_seconds = lifetime_seconds
        self.lifetime = timedelta(seconds=lifetime_seconds)

    @classmethod
    def from_config(cls, config):
        return cls(config.get("TOKEN_SECRET"), int(config.get("TOKEN_LIFETIME_SECONDS", 3600)))

    def issue(self, account):
        return self._token(f"{'patron' if account['role'] == PATRON else 'staff'}:{account['id']}",
                           account["tenant"], account["role"], account.get("libraries", []))

    def issue_like(self, claims):
        """A new token for the holder of a valid one (``claims``, verified), with the same role and libraries."""
        return self._token(claims["sub"], claims["tenant"], claims["role"], claims.get("libraries", []))

    def _token(self, subject, tenant, role, libraries):
        issued = token_time()
        claims = {
            # iat to the microsecond, so that a token issued just after a revocation is not taken for one before
            "iss": ISSUER, "aud": AUDIENCE, "iat": issued.timestamp(), "exp": issued + self.lifetime,
            "sub": subject, "tenant": tenant, "role": role, "libraries": libraries,
        }
        return jwt.encode(claims, self.secret, algorithm="HS256")

    def verify(self, token):
        try:
            return jwt.decode(
                token, self.secret, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "tenant", "role"]},
            )
        except jwt.ExpiredSignatureError:
            raise NotAuthenticated("the access token has expired") from None
        except jwt.InvalidTokenError:
            raise NotAuthenticated("the access token is not valid") from None


class Tokens(DependencyProvider):
    """The container's token issuer, for the log-in route."""

    def setup(self):
        self.issuer = TokenIssuer.from_config(self.container.config)

    def get_dependency(self, worker_ctx):
        return self.issuer


class RevokedCredentials(SharedExtension):
    """This process's revoked credentials: (tenant, subject) -> the instant (POSIX seconds) before which that
    subject's tokens are refused."""

    def setup(self):
        self.not_before = {}

    def revoke(self, tenant, subject, not_before):
        key = (tenant, subject)
        self.not_before[key] = max(not_before.timestamp(), self.not_before.get(key, 0.0))

    def forget_before(self, horizon):
        """Revocations older than ``horizon`` refuse nothing any more: every token they ended has expired."""
        self.not_before = {key: instant for key, instant in self.not_before.items() if instant >= horizon.timestamp()}

    def refuses(self, claims):
        return claims["iat"] < self.not_before.get((claims["tenant"], claims["sub"]), float("-inf"))


class Revocations(DependencyProvider):
    """The container's revoked credentials, for the handlers that learn of them."""

    revoked = RevokedCredentials()

    def get_dependency(self, worker_ctx):
        return self.revoked


class CatchUpTimer(Timer):
    """A timer whose first run waits until the container consumes from its queues: its RPC replies, and the
    ``credentials_revoked`` broadcast, so that no revocation falls between the broadcast and the catch-up."""

    queue_consumer = QueueConsumer()

    def start(self):
        self.queue_consumer.start()  # returns once the consumers are ready (it starts them only once)
        super().start()


catch_up_timer = CatchUpTimer.decorator
