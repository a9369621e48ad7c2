"""A tenant's signing keys over time: rotation with a grace period, revocation, and sealing
the plain-text secrets older versions left in the control plane.

Every change bumps the tenant's keys_version in the same transaction; each replica's registry
re-reads that number every few seconds (MEM_KEY_CHECK_SECONDS) and reloads the tenant when it
moved, so a revocation reaches every replica within that interval, not the 30 s tenant cache.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import structlog

from app.auth.tokens import mint_api_key
from app.tenancy import repo
from app.tenancy.control import ControlPlane
from app.tenancy.crypto import MasterKeyError
from app.tenancy.errors import CurrentKeyNotRevocable, SigningKeyNotFound, TenantNotFound
from app.tenancy.models import Tenant
from app.tenancy.provisioning import new_kid
from app.tenancy.vault import Vault

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Rotation:
    kid: str
    previous_kid: str | None
    previous_valid_until: float | None
    keys_version: int


KEY_DAY = 86_400


def api_keys(tenant: Tenant, *, lifetime_seconds: int, now: float | None = None) -> dict[str, str]:
    """anon and service_role keys signed with the tenant's current secret, never stored.

    They are issued as of the start of the current UTC day, so asking again the same day
    gives the same keys (what the banner printed is what `tenant keys` prints), and a key
    asked for today expires lifetime_seconds after today began.
    """
    moment = int(time.time() if now is None else now)
    now_day = moment - moment % KEY_DAY
    return {
        role: mint_api_key(
            tenant.jwt_secret,
            tenant.ref,
            role,
            issued_at=now_day,
            kid=tenant.kid,
            lifetime_seconds=lifetime_seconds,
        )
        for role in ("anon", "service_role")
    }


class SigningKeys:
    def __init__(self, control: ControlPlane, vault: Vault) -> None:
        self._control = control
        self._vault = vault

    async def rotate(self, ref: str, *, grace_seconds: int) -> Rotation:
        """A new current secret; the old one verifies for grace_seconds more (0: not at all)."""
        kid, secret = new_kid(), secrets.token_urlsafe(48)
        sealed = self._vault.seal_secret(ref, kid, secret)
        async with self._control.pool.acquire() as conn, conn.transaction():
            if not await repo.lock_tenant_keys(conn, ref):
                raise TenantNotFound(ref)
            previous = await repo.retire_current_key(conn, ref, grace_seconds=grace_seconds)
            await repo.insert_signing_key(
                conn, ref, kid=kid, secret_sealed=sealed, master_key_id=self._vault.key_id
            )
            version = await repo.bump_keys_version(conn, ref)
        log.info(
            "signing_key_rotated", tenant=ref, kid=kid, previous_kid=previous, grace_seconds=grace_seconds
        )
        until = time.time() + grace_seconds if previous else None
        return Rotation(kid=kid, previous_kid=previous, previous_valid_until=until, keys_version=version)

    async def revoke(self, ref: str, kid: str | None) -> tuple[list[str], int]:
        """Delete retired keys (all, or the one named) at once; the current key cannot be revoked."""
        async with self._control.pool.acquire() as conn, conn.transaction():
            if not await repo.lock_tenant_keys(conn, ref):
                raise TenantNotFound(ref)
            if kid is not None and kid == await repo.current_kid(conn, ref):
                raise CurrentKeyNotRevocable(kid)
            revoked = await repo.delete_retired_keys(conn, ref, kid)
            if kid is not None and not revoked:
                raise SigningKeyNotFound(kid)
            version = await repo.bump_keys_version(conn, ref)
        log.info("signing_keys_revoked", tenant=ref, kids=revoked)
        return revoked, version

    async def seal_plaintext_rows(self) -> list[str]:
        """Seal secrets older versions stored in plain text, then clear them. Idempotent; replicas
        starting together serialise on the rows' locks and the second finds nothing left."""
        vault = self._vault
        sealed: list[str] = []
        async with self._control.pool.acquire() as conn, conn.transaction():
            for row in await repo.plaintext_tenants(conn):
                ref = row["ref"]
                if row["jwt_secret"] is not None:
                    kid = new_kid()
                    await repo.insert_signing_key(
                        conn,
                        ref,
                        kid=kid,
                        secret_sealed=vault.seal_secret(ref, kid, row["jwt_secret"]),
                        master_key_id=vault.key_id,
                    )
                password = row["app_role_password"]
                await repo.seal_plaintext_tenant(
                    conn,
                    ref,
                    password_sealed=vault.seal_password(ref, password) if password is not None else None,
                    master_key_id=vault.key_id,
                )
                sealed.append(ref)
        if sealed:
            log.info("control_plane_secrets_sealed", tenants=sealed)
        return sealed

    async def check_master_key(self) -> None:
        """Refuse to start when anything in the control plane was sealed with an unknown master key."""
        async with self._control.pool.acquire() as conn:
            unknown = await repo.master_key_ids(conn) - self._vault.known_key_ids
        if unknown:
            raise MasterKeyError(
                f"The control plane's secrets were sealed with master key {', '.join(sorted(unknown))}, "
                f"but this server has master key {self._vault.key_id}.",
                hint="Start with the MEM_MASTER_KEY (or MEM_MASTER_KEY_FILE) the platform was set up with, "
                "or name the old one in MEM_MASTER_KEY_PREVIOUS to reseal with the new one.",
            )

    async def reseal_with_current_key(self) -> int:
        """Master key rotation: reseal what MEM_MASTER_KEY_PREVIOUS keys sealed with MEM_MASTER_KEY."""
        vault = self._vault
        old_ids = sorted(vault.known_key_ids - {vault.key_id})
        if not old_ids:
            return 0
        async with self._control.pool.acquire() as conn, conn.transaction():
            passwords, keys = await repo.sealed_with(conn, old_ids)
            for ref, sealed, key_id in passwords:
                plain = vault.open_password(ref, sealed, key_id)
                await repo.reseal_password(conn, ref, vault.seal_password(ref, plain), vault.key_id)
            for ref, kid, sealed, key_id in keys:
                plain = vault.open_secret(ref, kid, sealed, key_id)
                await repo.reseal_signing_key(
                    conn, ref, kid, vault.seal_secret(ref, kid, plain), vault.key_id
                )
        if passwords or keys:
            log.info(
                "control_plane_secrets_resealed", rows=len(passwords) + len(keys), master_key_id=vault.key_id
            )
        return len(passwords) + len(keys)
