"""The platform admin key: MEM_ADMIN_KEY, or one that `serve` generates into the data directory."""

from __future__ import annotations

import secrets
from pathlib import Path

from app.settings import Settings
from app.tenancy.crypto import write_private_file

FILE_NAME = "admin_key"


def key_file(settings: Settings) -> Path:
    return settings.data_dir / FILE_NAME


def ensure_admin_key(settings: Settings) -> Settings:
    """For `serve`: without MEM_ADMIN_KEY, generate a key once and keep it in the data directory."""
    if settings.admin_key:
        return settings
    path = key_file(settings)
    if not path.exists():
        write_private_file(path, secrets.token_urlsafe(32))
    return settings.replace(admin_key=path.read_text().strip())


def known_admin_key(settings: Settings) -> str | None:
    """For the client commands: MEM_ADMIN_KEY, else the data directory's file. Never creates one."""
    if settings.admin_key:
        return settings.admin_key
    path = key_file(settings)
    if not path.is_file():
        return None
    return path.read_text().strip() or None
