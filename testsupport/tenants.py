"""Tenants for tests: copies of one template database migrated once, dropped again after use.

Every tenant still goes through the real `Platform.create_tenant`, so its roles, grants, keys and
registry row are the product's own; the template only spares each tenant an empty database and
a first run of the mem migrations. `create_tenant` keeps an existing database and existing roles
(its DDL is idempotent), so a copy made here beforehand is adopted; the mem migrations then find
every file applied (mem.schema_migrations came with the copy) and grants.sql, which runs on every
init, gives the tenant's app role its privileges, exactly as for a fresh tenant.

A copy starts out owned by the template's roles. Before create_tenant sees it, its objects are
handed to the new tenant's owner role (REASSIGN OWNED), the template roles' privileges inside it
are removed (DROP OWNED), and the owner gets what a fresh database gives it (prepare_mem_owner),
so nothing in a tenant's database names another tenant's role.
"""

from __future__ import annotations

import secrets
from typing import Any

import asyncpg

from app.db.dsn import with_database
from app.tenancy import repo
from app.tenancy.models import Tenant
from app.tenancy.service import Platform

TEMPLATE_NAME = "Test template"
_ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def new_ref() -> str:
    # Same shape as the platform's own refs: 20 lowercase letters.
    return "".join(secrets.choice(_ALPHABET) for _ in range(20))


class TenantTemplate:
    """One migrated mem database that test tenants are copied from (CREATE DATABASE … TEMPLATE)."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.tenant: Tenant | None = None

    async def prepare(self) -> None:
        """Create the template as a real tenant, then take it out of the registry.

        Its database belongs to the server admin afterwards, so REASSIGN OWNED in a copy changes
        objects of that copy only, never the template database itself.
        """
        tenant = await self.platform.create_tenant(TEMPLATE_NAME)
        conn = await asyncpg.connect(self.platform.server_dsn)
        try:
            await conn.execute(f'ALTER DATABASE "{tenant.db_name}" OWNER TO CURRENT_USER')
            # Its app role is gone with the registry row: it keeps no way into the template.
            await conn.execute(
                f'REVOKE CONNECT, TEMPORARY ON DATABASE "{tenant.db_name}" FROM "{tenant.app_role}"'
            )
        finally:
            await conn.close()
        async with self.platform.control.pool.acquire() as cp:
            await repo.delete_tenant_row(cp, tenant.ref)
        self.platform.registry.forget(tenant.ref)
        self.tenant = tenant

    def fits(self, platform: Platform) -> bool:
        """A copy is only right for a platform that would create the same mem schema."""
        mem = platform.settings.mem
        return (
            self.tenant is not None
            and mem.enabled
            and platform.server_dsn == self.platform.server_dsn
            and self.tenant.embedding_dims == mem.embedding_dimensions
            and self.tenant.fts_config == mem.search_fts_config
        )

    async def create_tenant(self, platform: Platform, name: str, **kwargs: Any) -> Tenant:
        """platform.create_tenant(name, **kwargs) on a copy of the template."""
        template = self.tenant
        assert template is not None, "prepare() first"
        ref = kwargs.pop("ref", None) or new_ref()
        owner_role, app_role, db_name = f"mem_owner_{ref}", f"mem_app_{ref}", f"mem_{ref}"
        admin = await asyncpg.connect(platform.server_dsn)
        try:
            # Roles from the product's own DDL; the app role's password is set once the
            # platform has chosen it (below).
            await repo.create_roles(
                admin, owner_role=owner_role, app_role=app_role, app_password=secrets.token_hex(24)
            )
            try:
                await admin.execute(
                    f'CREATE DATABASE "{db_name}" TEMPLATE "{template.db_name}" OWNER "{owner_role}"'
                )
                copy = await asyncpg.connect(with_database(platform.server_dsn, db_name))
                try:
                    await copy.execute(
                        f'REASSIGN OWNED BY "{template.owner_role}" TO "{owner_role}";'
                        f' DROP OWNED BY "{template.owner_role}", "{template.app_role}"'
                    )
                    await repo.prepare_mem_owner(copy, owner_role)
                finally:
                    await copy.close()
                tenant = await platform.create_tenant(name, ref=ref, **kwargs)
            except BaseException:
                await repo.drop_database_and_roles(admin, db_name=db_name, roles=[app_role, owner_role])
                raise
            # The platform adopted the copy and the roles; if its naming ever changes, say so.
            assert (tenant.db_name, tenant.owner_role, tenant.app_role) == (db_name, owner_role, app_role), (
                "create_tenant no longer names databases and roles after the ref: update testsupport.tenants"
            )
            await admin.execute(f"ALTER ROLE \"{app_role}\" PASSWORD '{tenant.app_role_password}'")
        finally:
            await admin.close()
        return tenant


async def drop_tenant(platform: Platform, tenant: Tenant) -> None:
    """Remove a tenant completely: its database (even with sessions open), roles and registry row."""
    await platform.provisioner.remove(
        tenant.ref, db_name=tenant.db_name, roles=[tenant.app_role, tenant.owner_role]
    )
    platform.registry.forget(tenant.ref)
