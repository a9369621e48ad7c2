"""What `serve` and `status` print: the demo tenant's keys, and a request that works as pasted.

`serve` prints secrets only where they cannot leak into shared logs: the embedded development
default prints everything; with DATABASE_URL (a deployment, whose stdout is container logs)
the demo tenant exists only when MEM_CREATE_DEMO=1 asks for it, and then only its own keys
are printed, never the platform admin key or the tenant's JWT secret.
"""

from __future__ import annotations

import uuid
from typing import Any

from app.auth.tokens import mint_user_token

DEMO_REF = "demo"
DEMO_USER_SUB = str(uuid.uuid5(uuid.NAMESPACE_URL, "memory/demo-user"))
ONE_DAY = 86400


def demo_info(api_url: str, keys: dict[str, str], admin_key: str | None) -> dict[str, Any]:
    """The fields of `status --json`; `keys` holds a tenant's ref, anon and service_role keys and secret."""
    return {
        "api_url": api_url,
        "docs_url": f"{api_url}/docs",
        "tenant_ref": keys["ref"],
        "anon_key": keys["anon_key"],
        "service_role_key": keys["service_role_key"],
        "jwt_secret": keys["jwt_secret"],
        "admin_key": admin_key,
        "sample_user_id": DEMO_USER_SUB,
        "sample_user_jwt": mint_user_token(
            keys["jwt_secret"],
            DEMO_USER_SUB,
            ref=keys["ref"],
            kid=keys.get("kid"),
            email="demo@example.com",
            lifetime_seconds=ONE_DAY,
        ),
    }


HIDDEN = "(not printed with DATABASE_URL: `python -m app status` shows it)"


def deployment_banner(info: dict[str, Any]) -> dict[str, Any]:
    """The banner's fields for a DATABASE_URL deployment: no platform admin key, no JWT secret."""
    return {**info, "jwt_secret": HIDDEN, "admin_key": HIDDEN}


def rows(pairs: list[tuple[str, Any]]) -> list[str]:
    width = max(len(k) for k, _ in pairs)
    return [f"  {k.rjust(width)}: {v}" for k, v in pairs]


def render_plain_banner(api_url: str) -> str:
    """Without a demo tenant: where the service is, and how to make a tenant."""
    lines = ["", "Memory is running.", ""]
    lines += rows([("API URL", api_url), ("Docs", f"{api_url}/docs"), ("Studio", f"{api_url}/studio")])
    lines += ["", "  Create a tenant (prints its keys): python -m app tenant create 'My app'", ""]
    return "\n".join(lines)


def render_banner(info: dict[str, Any]) -> str:
    lines = ["", "Memory is running.", ""]
    lines += rows(
        [
            ("API URL", info["api_url"]),
            ("Docs", info["docs_url"]),
            ("Studio", f"{info['api_url']}/studio"),
            ("Tenant ref", info["tenant_ref"]),
            ("anon key", info["anon_key"]),
            ("service_role key", info["service_role_key"]),
            ("JWT secret", info["jwt_secret"]),
            ("Admin key", info["admin_key"] or "(not known here: set MEM_ADMIN_KEY)"),
            ("Sample user id", info["sample_user_id"]),
            ("Sample user JWT", info["sample_user_jwt"]),
        ]
    )
    lines += [
        "",
        "  Try it:",
        f"    curl -s {info['api_url']}/mem/v1/memories -H 'apikey: {info['service_role_key']}' \\",
        "      -H 'content-type: application/json' \\",
        '      -d \'{"messages": "I prefer TypeScript", "user_id": "alice"}\'',
        "",
    ]
    return "\n".join(lines)
