"""`status` and `tenant ...`: read and change the running server through its HTTP API."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from app.cli.banner import DEMO_REF, demo_info, render_banner, render_plain_banner, rows
from app.cli.client import AdminClient

STATUS_JSON_FIELDS = (
    "api_url",
    "docs_url",
    "tenant_ref",
    "anon_key",
    "service_role_key",
    "jwt_secret",
    "admin_key",
    "sample_user_id",
    "sample_user_jwt",
)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def cmd_status(client: AdminClient, *, as_json: bool) -> int:
    refs = [t["ref"] for t in client.get("/auth/v1/admin/tenants")["tenants"]]
    if DEMO_REF not in refs:
        # A deployment (DATABASE_URL) has no demo tenant unless MEM_CREATE_DEMO=1 asked for one.
        if as_json:
            _print_json({"api_url": client.url, "docs_url": f"{client.url}/docs", "tenant_ref": None})
        else:
            print(render_plain_banner(client.url))
        return 0
    keys = client.get(f"/auth/v1/admin/tenants/{DEMO_REF}/keys")
    info = demo_info(client.url, keys, client.admin_key)
    if as_json:
        _print_json({k: info[k] for k in STATUS_JSON_FIELDS})
    else:
        print(render_banner(info))
    return 0


def cmd_tenant_list(client: AdminClient, *, as_json: bool) -> int:
    tenants = client.get("/auth/v1/admin/tenants")["tenants"]
    if as_json:
        _print_json(tenants)
        return 0
    table = [("REF", "NAME", "STATUS", "CREATED")]
    table += [(t["ref"], t["name"], t["status"], t["created_at"]) for t in tenants]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _print_keys(api_url: str, keys: dict[str, Any], as_json: bool) -> None:
    shown = {
        "api_url": api_url,
        "tenant_ref": keys["ref"],
        "anon_key": keys["anon_key"],
        "service_role_key": keys["service_role_key"],
        "jwt_secret": keys["jwt_secret"],
    }
    if as_json:
        _print_json(shown)
    else:
        print("\n".join(rows(list(shown.items()))))


def cmd_tenant_keys(client: AdminClient, ref: str, *, as_json: bool) -> int:
    _print_keys(client.url, client.get(f"/auth/v1/admin/tenants/{quote(ref, safe='')}/keys"), as_json)
    return 0


def cmd_tenant_create(client: AdminClient, name: str, *, ref: str | None, as_json: bool) -> int:
    body: dict[str, Any] = {"name": name} if ref is None else {"name": name, "ref": ref}
    _print_keys(client.url, client.post("/auth/v1/admin/tenants", body), as_json)
    return 0
