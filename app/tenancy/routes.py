"""Platform admin routes under /auth/v1/admin (platform admin key only)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from app.auth.dependencies import admin_guard, runtime_of
from app.memories.schemas import decode_body
from app.tenancy.schemas import CreateTenantRequest


class AdminController(Controller):
    path = "/auth/v1/admin"
    tags = ["admin"]
    guards = [admin_guard]

    @post("/tenants", status_code=HTTP_201_CREATED, summary="Create a tenant: database, secret and keys")
    async def create_tenant(self, request: Request[Any, Any, Any], data: dict[str, Any]) -> dict[str, Any]:
        body = decode_body(data, CreateTenantRequest)
        platform = runtime_of(request).platform
        tenant = await platform.create_tenant(body.name, ref=body.ref, jwks_url=body.jwks_url, jwks=body.jwks)
        return {
            **tenant.public_view(),
            "anon_key": tenant.anon_key,
            "service_role_key": tenant.service_role_key,
            "jwt_secret": tenant.jwt_secret,
        }

    @get("/tenants", summary="List tenants")
    async def list_tenants(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        tenants = await runtime_of(request).platform.list_tenants()
        return {"tenants": [t.public_view() for t in tenants]}

    @post("/init/mem-schema", status_code=HTTP_200_OK, summary="Create or update the mem schema (idempotent)")
    async def init_mem_schema(
        self, request: Request[Any, Any, Any], db_key: str | None = Parameter(query="dbKey", default=None)
    ) -> dict[str, Any]:
        platform = runtime_of(request).platform
        if db_key is not None:
            results = [await platform.init_mem_schema(db_key)]
        else:
            results = await platform.init_all_mem_schemas()
        return {"tenants": [r.as_dict() for r in results]}
