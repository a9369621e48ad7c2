"""Command line: `python -m app [serve | status [--json] | tenant create NAME]`."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import uuid
from pathlib import Path
from typing import Any

from app.auth.tokens import mint_user_token
from app.settings import Settings, SettingsError, load_settings

DEMO_REF = "demo"
DEMO_USER_SUB = str(uuid.uuid5(uuid.NAMESPACE_URL, "memory/demo-user"))


def _with_admin_key(settings: Settings) -> Settings:
    """The embedded default generates a platform admin key once and keeps it in the data directory."""
    if settings.admin_key:
        return settings
    path: Path = settings.data_dir / "admin_key"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return settings.replace(admin_key=path.read_text().strip())


async def _with_platform(settings: Settings, action: Any) -> Any:
    from app.db.embedded import start_embedded
    from app.tenancy.service import Platform

    dsn = settings.database_url
    if not dsn:
        dsn = start_embedded(settings.data_dir).dsn
    platform = Platform(settings, dsn)
    await platform.start()
    try:
        return await action(platform)
    finally:
        await platform.stop()


async def _demo_status(settings: Settings) -> dict[str, Any]:
    async def action(platform: Any) -> dict[str, Any]:
        tenant = await platform.find_tenant(DEMO_REF)
        if tenant is None:
            tenant = await platform.create_tenant("Demo", ref=DEMO_REF)
        return _keys(settings, tenant)

    result: dict[str, Any] = await _with_platform(settings, action)
    return result


def _keys(settings: Settings, tenant: Any) -> dict[str, Any]:
    return {
        "api_url": settings.api_url,
        "tenant_ref": tenant.ref,
        "anon_key": tenant.anon_key,
        "service_role_key": tenant.service_role_key,
        "jwt_secret": tenant.jwt_secret,
        "admin_key": settings.admin_key,
        "sample_user_id": DEMO_USER_SUB,
        "sample_user_jwt": mint_user_token(
            tenant.jwt_secret, DEMO_USER_SUB, ref=tenant.ref, email="demo@example.com", lifetime_seconds=86400
        ),
        "docs_url": f"{settings.api_url}/docs",
    }


def _banner(info: dict[str, Any]) -> str:
    rows = [
        ("API URL", info["api_url"]),
        ("Docs", info["docs_url"]),
        ("Tenant ref", info["tenant_ref"]),
        ("anon key", info["anon_key"]),
        ("service_role key", info["service_role_key"]),
        ("JWT secret", info["jwt_secret"]),
        ("Admin key", info["admin_key"]),
        ("Sample user id", info["sample_user_id"]),
        ("Sample user JWT", info["sample_user_jwt"]),
    ]
    width = max(len(k) for k, _ in rows)
    lines = ["", "Memory is running.", ""] + [f"  {k.rjust(width)}: {v}" for k, v in rows]
    lines += [
        "",
        "  Try it:",
        f"    curl -s {info['api_url']}/mem/v1/memories -H 'apikey: <service_role key>' \\",
        "      -H 'content-type: application/json' \\",
        '      -d \'{"messages": "I prefer TypeScript", "user_id": "alice"}\'',
        "",
    ]
    return "\n".join(lines)


def cmd_serve(settings: Settings) -> int:
    import uvicorn

    from app.asgi import create_app

    info = asyncio.run(_demo_status(settings))
    print(_banner(info), flush=True)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    return 0


def cmd_status(settings: Settings, as_json: bool) -> int:
    info = asyncio.run(_demo_status(settings))
    if as_json:
        print(
            json.dumps(
                {
                    k: info[k]
                    for k in (
                        "api_url",
                        "anon_key",
                        "service_role_key",
                        "jwt_secret",
                        "admin_key",
                        "tenant_ref",
                        "sample_user_jwt",
                    )
                },
                indent=2,
            )
        )
    else:
        print(_banner(info))
    return 0


def cmd_tenant_create(settings: Settings, name: str, ref: str | None) -> int:
    async def action(platform: Any) -> Any:
        return await platform.create_tenant(name, ref=ref)

    tenant = asyncio.run(_with_platform(settings, action))
    print(
        json.dumps(
            {
                **tenant.public_view(),
                **{k: v for k, v in _keys(settings, tenant).items() if k not in ("docs_url",)},
            },
            indent=2,
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="Memory: long-term memory for AI apps")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="start the service (the default)")
    status = sub.add_parser("status", help="print the API URL and the demo tenant's keys")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    tenant = sub.add_parser("tenant", help="manage tenants")
    tenant_sub = tenant.add_subparsers(dest="tenant_command", required=True)
    create = tenant_sub.add_parser("create", help="create a tenant and print its keys")
    create.add_argument("name")
    create.add_argument("--ref", default=None)
    args = parser.parse_args(argv)

    from app.errors import AppError
    from app.logging import configure_logging

    try:
        settings = _with_admin_key(load_settings())
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(
        settings.log_format, "warning" if args.command in ("status", "tenant") else settings.log_level
    )
    try:
        if args.command == "status":
            return cmd_status(settings, args.json)
        if args.command == "tenant":
            return cmd_tenant_create(settings, args.name, args.ref)
        return cmd_serve(settings)
    except AppError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
