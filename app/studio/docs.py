"""/docs without the internet: Swagger UI from files the service serves itself (vendored, pinned).

Litestar's SwaggerRenderPlugin loads its script, stylesheet and favicon from a CDN; on a machine
without internet (or a locked-down browser) that page stays blank. The same plugin, pointed at
app/static/vendor/swagger-ui-dist (see `make vendor`), with a link to Studio above it.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.openapi.plugins import SwaggerRenderPlugin

STATIC_PATH = "/static"
SWAGGER_UI_VERSION = "5.35.0"  # the swagger-ui-dist files in app/static/vendor (Makefile: vendor)
_ASSETS = f"{STATIC_PATH}/vendor/swagger-ui-dist"
_STYLE = """<style>
body { margin: 0; padding: 0 }
.memory-nav { font: 14px/1.4 system-ui, sans-serif; padding: 8px 16px; background: #1b2733; }
.memory-nav a { color: #fff; margin-right: 16px; }
</style>"""
_NAV = (
    b'<nav class="memory-nav" aria-label="Memory"><a href="/studio">Studio</a>'
    b'<a href="/docs/openapi.json">openapi.json</a></nav>'
)


class OfflineSwagger(SwaggerRenderPlugin):
    def __init__(self) -> None:
        super().__init__(
            version=SWAGGER_UI_VERSION,
            js_url=f"{_ASSETS}/swagger-ui-bundle.js",
            css_url=f"{_ASSETS}/swagger-ui.css",
            standalone_preset_js_url=f"{_ASSETS}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{_ASSETS}/favicon-32x32.png'>",
            style=_STYLE,
        )

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        page = super().render(request, openapi_schema)
        page = page.replace(b"<html>", b'<html lang="en">', 1)
        return page.replace(b"<body>", b"<body>" + _NAV, 1)
