"""Opening and sealing tenant secrets: the only place control-plane ciphertexts meet the master key."""

from __future__ import annotations

from dataclasses import dataclass

from app.auth.tokens import KeyRing, SigningKey
from app.tenancy.crypto import MasterKey, MasterKeyError
from app.tenancy.models import Tenant, TenantRecord


def password_context(ref: str) -> str:
    return f"app_role_password:{ref}"


def secret_context(ref: str, kid: str) -> str:
    return f"jwt_secret:{ref}:{kid}"


@dataclass(frozen=True)
class Vault:
    master: MasterKey
    audience: str = "authenticated"
    max_token_lifetime: int = 86_400
    # Keys the platform used before MEM_MASTER_KEY: they open old rows until start-up reseals them.
    previous: tuple[MasterKey, ...] = ()

    @property
    def key_id(self) -> str:
        return self.master.key_id

    @property
    def known_key_ids(self) -> set[str]:
        return {self.master.key_id, *(k.key_id for k in self.previous)}

    def _master_for(self, key_id: str) -> MasterKey:
        for key in (self.master, *self.previous):
            if key.key_id == key_id:
                return key
        raise MasterKeyError(
            f"The control plane's secrets were sealed with master key {key_id}, "
            f"but this server has master key {self.key_id}.",
            hint="Start with the MEM_MASTER_KEY (or MEM_MASTER_KEY_FILE) the platform was set up with, "
            "or name the old one in MEM_MASTER_KEY_PREVIOUS to reseal with the new one.",
        )

    def open_password(self, ref: str, sealed: bytes, key_id: str) -> str:
        return self._master_for(key_id).open(sealed, password_context(ref))

    def open_secret(self, ref: str, kid: str, sealed: bytes, key_id: str) -> str:
        return self._master_for(key_id).open(sealed, secret_context(ref, kid))

    def seal_password(self, ref: str, password: str) -> bytes:
        return self.master.seal(password, password_context(ref))

    def seal_secret(self, ref: str, kid: str, secret: str) -> bytes:
        return self.master.seal(secret, secret_context(ref, kid))

    def open(self, record: TenantRecord) -> Tenant:
        if record.app_role_password_sealed is None or record.master_key_id is None or not record.keys:
            raise MasterKeyError(
                f"Tenant {record.ref!r} has no sealed secrets yet.",
                hint="Restart the platform: start-up seals rows written by older versions.",
            )
        password = self.open_password(record.ref, record.app_role_password_sealed, record.master_key_id)
        ring = KeyRing(
            keys=tuple(
                SigningKey(
                    kid=k.kid,
                    secret=self.open_secret(record.ref, k.kid, k.secret_sealed, k.master_key_id),
                    valid_until=k.valid_until,
                )
                for k in record.keys
            ),
            audience=self.audience,
            issuer=record.jwt_issuer,
            max_token_lifetime=self.max_token_lifetime,
        )
        return Tenant(
            ref=record.ref,
            name=record.name,
            db_url=record.db_url,
            db_name=record.db_name,
            owner_role=record.owner_role,
            app_role=record.app_role,
            app_role_password=password,
            keys=ring,
            jwks_url=record.jwks_url,
            jwks=record.jwks,
            status=record.status,
            embedding_dims=record.embedding_dims,
            fts_config=record.fts_config,
            mem_schema_version=record.mem_schema_version,
            keys_version=record.keys_version,
            created_at=record.created_at,
            cors_origins=record.cors_origins,
            limits=dict(record.limits),
        )
