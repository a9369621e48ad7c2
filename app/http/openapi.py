"""How callers authenticate, as the OpenAPI document tells Swagger's "Authorize" dialog."""

from __future__ import annotations

from litestar.openapi.spec import SecurityRequirement, SecurityScheme

SECURITY_SCHEMES: dict[str, SecurityScheme] = {
    "apikey": SecurityScheme(
        type="apiKey",
        name="apikey",
        security_scheme_in="header",
        description="The tenant's service_role key (full access) or anon key (with a user's token).",
    ),
    "bearer": SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="JWT",
        description="A signed-in user's access token; with the anon key, it scopes calls to that user.",
    ),
    "adminKey": SecurityScheme(
        type="http",
        scheme="bearer",
        description="The platform admin key (admin endpoints only).",
    ),
}

# /mem/v1: the apikey always; a user's bearer token beside it when the key is the anon key.
MEMORY_SECURITY: list[SecurityRequirement] = [{"apikey": [], "bearer": []}, {"apikey": []}]
ADMIN_SECURITY: list[SecurityRequirement] = [{"adminKey": []}]
