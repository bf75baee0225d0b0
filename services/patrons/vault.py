"""Personal fields encrypted at rest (PRIVACY.md 10), with keys kept outside the patrons database.

Every patron has a data key of their own (AES-256-GCM). It is stored only *wrapped* by a master key that
comes from configuration, in a key store of its own (``KEYS_DATABASE_URL``), an erasing SQLite file
(shiori/keystore.py) kept apart from the patrons database. A copy of the patrons database alone reveals no
resident's name; deleting a patron erases their data key from every file of the key store, so no copy of
their record, taken before or after, can be read again (crypto-shredding).
Card numbers, phone numbers, and a name's reading with the birth date are found through keyed hashes
(HMAC-SHA256), never through plaintext.

Master keys form a ring, newest first (``MASTER_KEYS = "id:base64url-key,id:base64url-key"``): data keys are
wrapped with the newest, and ``rewrap`` moves the older ones to it while the service keeps serving.
"""
import base64
import hashlib
import hmac
import os
import uuid

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nameko.exceptions import ConfigurationError
from sqlalchemy import LargeBinary, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shiori.keystore import ErasingStore

NONCE_BYTES = 12


class KeysBase(DeclarativeBase):
    pass


class DataKey(KeysBase):
    __tablename__ = "data_keys"

    key_ref: Mapped[str] = mapped_column(String(36), primary_key=True)
    master_key_id: Mapped[str] = mapped_column(String(32), index=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)


def new_master_key_spec(key_id):
    """A fresh master key in the ring's text form (for first runs and rotations)."""
    return f"{key_id}:{base64.urlsafe_b64encode(AESGCM.generate_key(256)).decode()}"


class KeyRing:
    def __init__(self, spec):
        self.keys = {}
        for part in (spec or "").split(","):
            key_id, _, encoded = part.strip().partition(":")
            if not key_id:
                continue
            key = base64.urlsafe_b64decode(encoded)
            if len(key) != 32:
                raise ConfigurationError(f"master key {key_id!r} is not 32 bytes")
            self.keys[key_id] = AESGCM(key)
        if not self.keys:
            raise ConfigurationError("MASTER_KEYS (SHIORI_PATRONS_MASTER_KEYS) must name at least one key")
        self.current_id = next(iter(self.keys))

    def wrap(self, data_key):
        return self.current_id, _seal(self.keys[self.current_id], data_key, b"data-key")

    def unwrap(self, master_key_id, wrapped):
        return _open(self.keys[master_key_id], wrapped, b"data-key")


def _seal(aead, plaintext, associated):
    nonce = os.urandom(NONCE_BYTES)
    return nonce + aead.encrypt(nonce, plaintext, associated)


def _open(aead, blob, associated):
    return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], associated)


class PatronVault:
    """One worker's access to data keys and to sealing and opening fields."""

    def __init__(self, ring, lookup_key, session):
        self.ring = ring
        self.lookup_key = lookup_key
        self.session = session
        self.opened = {}

    def lookup_hash(self, tenant, kind, value):
        message = f"{tenant}\x1f{kind}\x1f{value}".encode()
        return hmac.new(self.lookup_key, message, hashlib.sha256).hexdigest()

    def new_key(self):
        """A new data key, stored (committed) in the key store before anything is sealed with it."""
        data_key = AESGCM.generate_key(256)
        master_key_id, wrapped = self.ring.wrap(data_key)
        key_ref = str(uuid.uuid4())
        self.session.add(DataKey(key_ref=key_ref, master_key_id=master_key_id, wrapped=wrapped))
        self.session.commit()
        self.opened[key_ref] = AESGCM(data_key)
        return key_ref

    def seal(self, key_ref, field, value):
        if value is None:
            return None
        return _seal(self._aead(key_ref), str(value).encode(), field.encode())

    def open(self, key_ref, field, blob):
        if blob is None:
            return None
        return _open(self._aead(key_ref), blob, field.encode()).decode()

    def shred(self, key_ref):
        """Destroy a patron's data key: whatever was sealed with it can never be read again."""
        key = self.session.get(DataKey, key_ref)
        if key is not None:
            self.session.delete(key)
            self.session.commit()
        self.opened.pop(key_ref, None)

    def rewrap(self, limit):
        """Wrap up to ``limit`` data keys still under an older master key with the newest; answers how many
        were moved and how many remain."""
        stale = self.session.scalars(
            select(DataKey).where(DataKey.master_key_id != self.ring.current_id).limit(limit)).all()
        for key in stale:
            key.master_key_id, key.wrapped = self.ring.wrap(self.ring.unwrap(key.master_key_id, key.wrapped))
        self.session.commit()
        remaining = self.session.query(DataKey).filter(DataKey.master_key_id != self.ring.current_id).count()
        return {"rewrapped": len(stale), "remaining": remaining}

    def _aead(self, key_ref):
        if key_ref not in self.opened:
            key = self.session.get(DataKey, key_ref)
            if key is None:
                raise LookupError("this patron's data key is gone")
            self.opened[key_ref] = AESGCM(self.ring.unwrap(key.master_key_id, key.wrapped))
        return self.opened[key_ref]


class Vault(ErasingStore):
    """The key store's sessions, handed to workers as a ``PatronVault``."""

    def __init__(self):
        super().__init__(KeysBase.metadata, url_key="KEYS_DATABASE_URL")

    def setup(self):
        config = self.container.config
        self.ring = KeyRing(config.get("MASTER_KEYS"))
        lookup_key = base64.urlsafe_b64decode(config.get("LOOKUP_KEY") or "")
        if len(lookup_key) < 32:
            raise ConfigurationError("LOOKUP_KEY (SHIORI_PATRONS_LOOKUP_KEY) must be 32 bytes or more, base64url")
        self.lookup_key = lookup_key
        super().setup()

    def get_dependency(self, worker_ctx):
        return PatronVault(self.ring, self.lookup_key, super().get_dependency(worker_ctx))
