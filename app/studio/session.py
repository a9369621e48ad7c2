"""Studio's session: who signed in, kept in one encrypted, signed, short-lived cookie.

The cookie holds the key the person signed in with (the platform admin key, or a tenant's
service_role key), the tenant they opened and a CSRF token. It is a Fernet token (AES-CBC and
HMAC-SHA256, with its issue time): the browser can neither read nor change it, and it is refused
once older than SESSION_SECONDS. Every page renews it (a sliding window of inactivity).

The secret comes from MEM_MASTER_KEY (HKDF, its own label), so every replica of a deployment
reads every replica's cookies; without one (the embedded development server) it is random per
process, and a restart signs everybody out.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import time

import msgspec
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.settings import Settings

COOKIE_NAME = "memory_studio"
COOKIE_PATH = "/studio"
SESSION_SECONDS = 30 * 60
CSRF_FIELD = "csrf_token"
_HKDF_INFO = b"memory studio session v1"


class StudioSession(msgspec.Struct, omit_defaults=True):
    """One browser's session; all key fields empty until someone signs in."""

    csrf: str
    admin_key: str | None = None
    tenant_key: str | None = None
    tenant_ref: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.admin_key is not None or self.tenant_key is not None

    @property
    def is_admin(self) -> bool:
        return self.admin_key is not None

    def csrf_matches(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf.encode())


def new_session() -> StudioSession:
    return StudioSession(csrf=secrets.token_urlsafe(32))


def session_secret(settings: Settings) -> bytes:
    """32 bytes for the Fernet key: derived from the master key, or random for this process."""
    if not settings.master_key:
        return secrets.token_bytes(32)
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO)
    return hkdf.derive(base64.b64decode(settings.master_key))


class SessionCodec:
    def __init__(self, secret: bytes, *, max_age: int = SESSION_SECONDS) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(secret))
        self.max_age = max_age

    def encode(self, session: StudioSession, *, at: float | None = None) -> str:
        data = msgspec.json.encode(session)
        now = int(time.time() if at is None else at)
        return self._fernet.encrypt_at_time(data, now).decode()

    def decode(self, cookie: str | None) -> StudioSession | None:
        """The session, or None when absent, forged, unreadable or older than max_age."""
        if not cookie:
            return None
        try:
            data = self._fernet.decrypt(cookie.encode(), ttl=self.max_age)
            return msgspec.json.decode(data, type=StudioSession)
        except (InvalidToken, msgspec.DecodeError, ValueError):
            return None
