"""The master key, and the AES-GCM sealing of tenant secrets in the control plane.

Every sealed value is 12 bytes of nonce followed by the AES-256-GCM ciphertext, stored next
to the id of the master key that sealed it. The associated data names the tenant and the
field ("jwt_secret:<ref>:<kid>"), so a ciphertext copied into another row or column does not
open. The key id is the first 16 hex digits of the key's SHA-256: it identifies a key without
revealing it, and lets a row sealed by another key be named clearly instead of failing blind.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.errors import AppError

KEY_BYTES = 32
NONCE_BYTES = 12
MASTER_KEY_FILE = "master_key"


class MasterKeyError(AppError):
    """The master key is missing, malformed, or not the one the control plane was sealed with."""

    status_code = 500
    code = "master_key_invalid"


@dataclass(frozen=True)
class MasterKey:
    key: bytes = field(repr=False)

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.key).hexdigest()[:16]

    @classmethod
    def from_base64(cls, text: str, *, source: str = "MEM_MASTER_KEY") -> MasterKey:
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MasterKeyError(f"{source} is not base64.") from exc
        if len(raw) != KEY_BYTES:
            raise MasterKeyError(f"{source} must decode to {KEY_BYTES} bytes, not {len(raw)}.")
        return cls(raw)

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    def to_base64(self) -> str:
        return base64.b64encode(self.key).decode()

    def seal(self, plaintext: str, context: str) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + AESGCM(self.key).encrypt(nonce, plaintext.encode(), context.encode())

    def open(self, sealed: bytes, context: str) -> str:
        try:
            plain = AESGCM(self.key).decrypt(
                sealed[:NONCE_BYTES], bytes(sealed[NONCE_BYTES:]), context.encode()
            )
        except InvalidTag as exc:
            raise MasterKeyError(
                f"A sealed secret ({context.split(':')[0]}) does not open: altered or moved."
            ) from exc
        return plain.decode()


def parse_previous_keys(text: str | None) -> tuple[MasterKey, ...]:
    """MEM_MASTER_KEY_PREVIOUS: base64 keys separated by commas or new lines."""
    parts = [p.strip() for p in (text or "").replace("\n", ",").split(",")]
    return tuple(MasterKey.from_base64(p, source="MEM_MASTER_KEY_PREVIOUS") for p in parts if p)


def write_private_file(path: Path, text: str) -> bool:
    """Create a secret file, readable by its owner only from the moment it exists; never overwrite.

    The content goes to a temporary name opened with mode 0600 (O_EXCL: no planted symlink is
    followed), then is hard-linked into place, which fails if the file appeared meanwhile: two
    processes starting together keep the first one's secret. Returns whether this call wrote it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def development_master_key(data_dir: Path) -> MasterKey:
    """The embedded default's key: read from the data directory, or generated there once."""
    path = data_dir / MASTER_KEY_FILE
    if not path.exists():
        write_private_file(path, MasterKey.generate().to_base64())
    return MasterKey.from_base64(path.read_text(), source=str(path))
