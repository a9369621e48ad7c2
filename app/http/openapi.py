"""What the OpenAPI document says beyond the types: how callers authenticate (for Swagger's
"Authorize" dialog) and that request bodies refuse fields they do not declare."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from litestar.openapi.spec import Schema, SecurityRequirement, SecurityScheme
from litestar.plugins import OpenAPISchemaPlugin
from litestar.typing import FieldDefinition

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator

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


class StrictStructSchemas(OpenAPISchemaPlugin):
    """A struct that forbids unknown fields is documented with `additionalProperties: false`.

    Delegates the schema itself to the next plugin that handles the struct (Litestar's own).
    """

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return (
            not field_definition.is_union
            and field_definition.is_subclass_of(msgspec.Struct)
            and bool(field_definition.type_.__struct_config__.forbid_unknown_fields)
        )

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        fallback = next(
            plugin
            for plugin in schema_creator.plugins
            if plugin is not self
            and isinstance(plugin, OpenAPISchemaPlugin)
            and plugin.is_plugin_supported_field(field_definition)
        )
        schema = fallback.to_openapi_schema(field_definition=field_definition, schema_creator=schema_creator)
        schema.additional_properties = False
        return schema
