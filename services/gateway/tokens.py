"""Signed, short-lived access tokens for staff and patrons (JWT, HS256), checked at the gateway on every
request; the role in the token decides which routes it opens."""
from datetime import datetime, timedelta, timezone

import jwt
from nameko.extensions import DependencyProvider

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
        issued = datetime.now(timezone.utc)
        claims = {
            "iss": ISSUER, "aud": AUDIENCE, "iat": issued, "exp": issued + self.lifetime,
            "sub": f"{'patron' if account['role'] == PATRON else 'staff'}:{account['id']}",
            "tenant": account["tenant"], "role": account["role"], "libraries": account.get("libraries", []),
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
