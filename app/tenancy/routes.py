"""Platform admin routes under /auth/v1/admin (platform admin key only)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from litestar import Controller, get, post, put
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from app.http.bodies import StrictBody
from app.http.errors import error_responses
from app.http.openapi import ADMIN_SECURITY
from app.tenancy.responses import (
    CreatedTenant,
    RevokedKeys,
    RotatedKeys,
    SchemaInitResults,
    TenantKeys,
    TenantLimitsView,
    TenantList,
    TenantView,
)
from app.tenancy.schemas import CreateTenantRequest, SetCorsOrigins, TenantLimitsRequest
from app.tenancy.service import Platform

MAX_GRACE_SECONDS = 30 * 86_400


class AdminController(Controller):
    path = "/auth/v1/admin"
    tags = ["admin"]
    security = ADMIN_SECURITY
    # The platform admin guard is applied where create_app mounts this controller.

    @post(
        "/tenants",
        status_code=HTTP_201_CREATED,
        summary="Create a tenant: database, secret and keys",
        responses=error_responses(400, 401, 409, 413, 422, 500, 503),
        dto=StrictBody[CreateTenantRequest],
        return_dto=None,
    )
    async def create_tenant(self, platform: Platform, data: CreateTenantRequest) -> CreatedTenant:
        tenant = await platform.create_tenant(
            data.name,
            ref=data.ref,
            jwks_url=data.jwks_url,
            jwks=data.jwks,
            jwt_issuer=data.jwt_issuer,
            cors_origins=data.cors_origins,
        )
        return msgspec.convert({**tenant.public_view(), **platform.key_set(tenant)}, CreatedTenant)

    @get("/tenants", summary="List tenants", responses=error_responses(401, 500, 503))
    async def list_tenants(self, platform: Platform) -> TenantList:
        tenants = await platform.list_tenants()
        return msgspec.convert({"tenants": [t.public_view() for t in tenants]}, TenantList)

    @get(
        "/tenants/{ref:str}/keys",
        summary="A tenant's keys (freshly signed) and JWT secret, to print them again",
        responses=error_responses(400, 401, 404, 500, 503),
    )
    async def tenant_keys(self, platform: Platform, ref: str) -> TenantKeys:
        tenant = await platform.get_tenant(ref)
        return msgspec.convert(platform.key_set(tenant), TenantKeys)

    @post(
        "/tenants/{ref:str}/rotate-keys",
        status_code=HTTP_200_OK,
        summary="New secret and keys; the old secret verifies for a grace period",
        description=(
            "Signs new anon and service_role keys with a new secret (new kid). Keys and user tokens "
            "signed with the previous secret keep working for grace_seconds (default "
            "MEM_KEY_ROTATION_GRACE_SECONDS), then are refused; revoke-keys ends that at once."
        ),
        responses=error_responses(400, 401, 404, 500, 503),
    )
    async def rotate_keys(
        self,
        platform: Platform,
        ref: str,
        grace_seconds: int | None = Parameter(
            query="grace_seconds", default=None, ge=0, le=MAX_GRACE_SECONDS
        ),
    ) -> RotatedKeys:
        await platform.get_tenant(ref)
        tenant, rotation = await platform.rotate_keys(ref, grace_seconds=grace_seconds)
        until = rotation.previous_valid_until
        return msgspec.convert(
            {
                **platform.key_set(tenant),
                "previous_kid": rotation.previous_kid,
                "previous_valid_until": None
                if until is None
                else datetime.fromtimestamp(until, UTC).isoformat(),
                "keys_version": rotation.keys_version,
            },
            RotatedKeys,
        )

    @put(
        "/tenants/{ref:str}/cors",
        summary="Replace a tenant's CORS allow-list (browser origins that may use its keys)",
        responses=error_responses(400, 401, 404, 413, 422, 500, 503),
        dto=StrictBody[SetCorsOrigins],
        return_dto=None,
    )
    async def set_cors_origins(self, platform: Platform, ref: str, data: SetCorsOrigins) -> TenantView:
        tenant = await platform.set_cors_origins(ref, data.origins)
        return msgspec.convert(tenant.public_view(), TenantView)

    @get(
        "/tenants/{ref:str}/limits",
        summary="A tenant's own rate and concurrency limits, and the effective ones",
        responses=error_responses(400, 401, 404, 500, 503),
    )
    async def tenant_limits(self, platform: Platform, ref: str) -> TenantLimitsView:
        tenant = await platform.get_tenant(ref)
        return msgspec.convert(platform.limits_view(tenant), TenantLimitsView)

    @put(
        "/tenants/{ref:str}/limits",
        summary="Set a tenant's own limits (absent keys use the platform defaults)",
        responses=error_responses(400, 401, 404, 413, 422, 500, 503),
        dto=StrictBody[TenantLimitsRequest],
        return_dto=None,
    )
    async def set_tenant_limits(
        self, platform: Platform, ref: str, data: TenantLimitsRequest
    ) -> TenantLimitsView:
        tenant = await platform.set_tenant_limits(ref, data.as_dict())
        return msgspec.convert(platform.limits_view(tenant), TenantLimitsView)

    @post(
        "/tenants/{ref:str}/revoke-keys",
        status_code=HTTP_200_OK,
        summary="Refuse keys and tokens signed by retired secrets, at once",
        description=(
            "Deletes the tenant's retired signing keys (or only `kid`); every replica refuses what "
            "they signed within MEM_KEY_CHECK_SECONDS. The current key cannot be revoked: rotate first."
        ),
        responses=error_responses(400, 401, 404, 409, 500, 503),
    )
    async def revoke_keys(
        self,
        platform: Platform,
        ref: str,
        kid: str | None = Parameter(query="kid", default=None, min_length=1, max_length=64),
    ) -> RevokedKeys:
        await platform.get_tenant(ref)
        revoked, version = await platform.revoke_keys(ref, kid)
        return RevokedKeys(ref=ref, revoked=revoked, keys_version=version)

    @post(
        "/init/mem-schema",
        status_code=HTTP_200_OK,
        summary="Create or update the mem schema (idempotent)",
        responses=error_responses(400, 401, 404, 409, 500, 503),
    )
    async def init_mem_schema(
        self, platform: Platform, db_key: str | None = Parameter(query="dbKey", default=None)
    ) -> SchemaInitResults:
        if db_key is not None:
            results = [await platform.init_mem_schema(db_key)]
        else:
            results = await platform.init_all_mem_schemas()
        return msgspec.convert({"tenants": [r.as_dict() for r in results]}, SchemaInitResults)
