"""The patrons database's side of log-ins: failed attempts counted under row locks, and revoked credentials.

Counting is check-and-count in one locked step, before the password or PIN is verified: an attempt is
counted as a failure in advance, and refused (429) while a key is blocked. So fifty wrong PINs sent at once
for one card are counted one by one, and all but the first five are refused without being tried. The row
lock is PostgreSQL's ``SELECT … FOR UPDATE``; on SQLite the ``INSERT`` that makes sure the rows exist
already holds the database's write lock until the commit. Rows are locked in key order ("address:…" before
the account's), so two attempts sharing an address cannot deadlock.
"""
from sqlalchemy import delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from services.patrons.models import LoginFailure, RevokedCredential
from shiori.errors import TooManyAttempts


def _insert(session, model):
    """An INSERT with ``ON CONFLICT``, in the dialect of the session's database."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(model)


def _locked_attempts(session, keys, clock):
    """The keys' rows, made if missing, locked; and the time once they are (an attempt that waited for the
    lock is later than the one it waited for)."""
    keys = sorted(keys)
    session.execute(_insert(session, LoginFailure).values(
        [{"key": key, "failures": 0, "first_failed_at": clock()} for key in keys]
    ).on_conflict_do_nothing(index_elements=["key"]))
    rows = session.scalars(select(LoginFailure).where(LoginFailure.key.in_(keys)).order_by(LoginFailure.key)
                           .with_for_update().execution_options(populate_existing=True)).all()
    return rows, clock()


def admit_attempt(session, throttles, clock):
    """Count one log-in attempt against every key of ``throttles`` ({key: Throttle}), or raise
    TooManyAttempts (counting nothing) while any of them is blocked."""
    rows, now = _locked_attempts(session, throttles, clock)
    wait = max(throttles[row.key].retry_after(row.blocked_until, now) for row in rows)
    if wait:
        session.rollback()
        raise TooManyAttempts(details={"retry_after": wait})
    for row in rows:
        row.failures, row.first_failed_at, row.blocked_until = throttles[row.key].after_failure(
            row.failures, row.first_failed_at, now, row.blocked_until)
    session.commit()


def attempt_succeeded(session, account_key, shared_throttles, clock):
    """The attempt admitted was right: the account's failures are forgotten, and the attempt no longer
    counts against the shared keys ({key: Throttle}, an address) it was counted against in advance."""
    rows, now = _locked_attempts(session, shared_throttles, clock)  # first, as admit_attempt locks them first
    for row in rows:
        row.failures, row.blocked_until = shared_throttles[row.key].refunded(row.failures, row.blocked_until, now)
    session.execute(delete(LoginFailure).where(LoginFailure.key == account_key))
    session.commit()


def revoke(session, tenant, subject, not_before):
    """Tokens of ``subject`` ("staff:<id>", "patron:<id>") issued before ``not_before`` stop working; in the
    caller's transaction."""
    statement = _insert(session, RevokedCredential).values(tenant=tenant, subject=subject, not_before=not_before)
    session.execute(statement.on_conflict_do_update(index_elements=["tenant", "subject"],
                                                    set_={"not_before": statement.excluded.not_before}))


def revocations_since(session, since):
    return session.scalars(select(RevokedCredential).where(RevokedCredential.not_before >= since)
                           .order_by(RevokedCredential.not_before)).all()


def forget_revocations_before(session, horizon):
    """Revocations older than any token still valid are kept no longer."""
    forgotten = session.execute(delete(RevokedCredential).where(RevokedCredential.not_before < horizon)).rowcount
    session.commit()
    return forgotten


def forget_addresses_before(session, cutoff):
    """An address's failure record is nothing but the address and a count: once its attempts and block are
    older than ``cutoff`` it goes whole (its throttling ended long before); in the caller's transaction."""
    return session.execute(delete(LoginFailure).where(
        LoginFailure.key.startswith("address:"), LoginFailure.first_failed_at < cutoff,
        or_(LoginFailure.blocked_until.is_(None), LoginFailure.blocked_until < cutoff))).rowcount
