"""Forward-only, numbered migrations: sql/control for the registry, sql/mem for every tenant database.

A mem migration (NNN_name.sql) is applied once per tenant database, in number order, each
in its own transaction under a per-database advisory lock, as the tenant's owner role, and
recorded in mem.schema_migrations. Replicas starting together therefore queue on the lock,
and whoever comes second re-reads the applied versions and finds nothing left to do.

The app role's privileges are not granted inside the numbered files but by grants.sql, which
runs after the migrations on every init. It states the role's whole privilege set (revoke
everything, then grant the list), so the least-privilege rules the request role lives by are
one file to review, a migration that adds a table cannot leave a stale or too-broad grant
behind, and a grant changed by hand is put back by the next init.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
import structlog

from app.db import sqlfiles
from app.tenancy import repo
from app.tenancy.errors import MigrationOutOfOrder
from app.tenancy.models import MemSchemaParams, MigrationOutcome

log = structlog.get_logger(__name__)

GRANTS_FILE = "grants.sql"


class ControlMigrations:
    """Applies the control-plane files not yet recorded in control.schema_migrations."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or sqlfiles.directory("control")

    async def apply(self, conn: asyncpg.Connection) -> list[str]:
        applied: list[str] = []
        async with conn.transaction():
            await repo.lock_control_migrations(conn)
            done = await repo.applied_control_versions(conn)
            for file in sqlfiles.numbered_files(self.folder):
                if file.name not in done:
                    await repo.apply_control_file(conn, file.name, file.path.read_text())
                    log.info("control_migration_applied", file=file.name)
                    applied.append(file.name)
        return applied


class MemMigrations:
    """Brings one tenant database's mem schema up to the newest numbered file of a folder."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or sqlfiles.directory("mem")

    async def apply(self, conn: asyncpg.Connection, params: MemSchemaParams) -> MigrationOutcome:
        """conn is a superuser connection to the tenant database, outside any transaction."""
        values = repo.mem_placeholders(params)
        applied = [
            file.name
            for file in sqlfiles.numbered_files(self.folder)
            if await self._apply_once(conn, file, params.owner_role, values)
        ]
        version = await self._grant(conn, params.owner_role, values)
        return MigrationOutcome(version=version, applied=tuple(applied))

    async def _apply_once(
        self, conn: asyncpg.Connection, file: sqlfiles.SqlFile, owner_role: str, values: dict[str, str]
    ) -> bool:
        script = sqlfiles.render(file.path, values)
        async with conn.transaction():
            await repo.lock_mem_migrations(conn)
            # Read under the lock: another replica may have applied the file while we waited.
            done = await repo.applied_mem_versions(conn)
            if file.version in done:
                return False
            if done and file.version < max(done):
                raise MigrationOutOfOrder(
                    f"{file.name} is not applied but version {max(done)} is: "
                    "a migration was added below the newest one."
                )
            await repo.prepare_mem_owner(conn, owner_role)
            await repo.apply_mem_migration(conn, owner_role=owner_role, version=file.version, script=script)
        log.info("mem_migration_applied", file=file.name, version=file.version)
        return True

    async def _grant(self, conn: asyncpg.Connection, owner_role: str, values: dict[str, str]) -> int:
        script = sqlfiles.render(self.folder / GRANTS_FILE, values)
        async with conn.transaction():
            await repo.lock_mem_migrations(conn)
            await repo.apply_mem_grants(conn, owner_role=owner_role, script=script)
            return max(await repo.applied_mem_versions(conn), default=0)
