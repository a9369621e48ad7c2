"""`python -m app`: parse the command, load the settings, and turn every failure into one line."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from app.cli.admin_key import ensure_admin_key, known_admin_key
from app.cli.client import AdminClient, server_url
from app.cli.commands import cmd_status, cmd_tenant_create, cmd_tenant_keys, cmd_tenant_list
from app.cli.errors import CliError
from app.cli.listen import bind_socket
from app.logging import configure_logging
from app.settings import Settings, SettingsError, load_settings


def _client_options() -> argparse.ArgumentParser:
    """The options of every command that talks to a running server."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--url",
        default=None,
        help="the running server's URL (default: PUBLIC_URL, else http://HOST:PORT from the environment)",
    )
    options.add_argument(
        "--admin-key",
        default=None,
        help="the platform admin key (default: MEM_ADMIN_KEY, else the file admin_key in MEM_DATA_DIR)",
    )
    options.add_argument("--json", action="store_true", help="print JSON, for scripts")
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="Memory: long-term memory for AI apps. Without a command, `serve`.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{serve,status,tenant,mcp}")
    sub.add_parser("serve", help="start the service and print the demo tenant's keys once it answers")
    client = _client_options()
    sub.add_parser(
        "status", parents=[client], help="ask the running server for its URL and the demo tenant's keys"
    )
    tenant = sub.add_parser("tenant", help="list tenants, print their keys, create one on the running server")
    tenant_sub = tenant.add_subparsers(dest="tenant_command", required=True, metavar="{list,keys,create}")
    tenant_sub.add_parser("list", parents=[client], help="list the tenants")
    keys = tenant_sub.add_parser("keys", parents=[client], help="print a tenant's keys again")
    keys.add_argument("ref", help="the tenant's ref, e.g. demo")
    create = tenant_sub.add_parser("create", parents=[client], help="create a tenant and print its keys")
    create.add_argument("name", help="a display name, e.g. 'Acme'")
    create.add_argument(
        "--ref", default=None, help="the tenant's ref: 3-40 lowercase letters and digits (default: generated)"
    )
    _add_mcp_parser(sub)
    return parser


def _add_mcp_parser(sub: Any) -> None:
    bridge = sub.add_parser(
        "mcp",
        help="speak MCP on stdio (for Claude Desktop, Cursor, ...) and forward to a running server's /mcp",
    )
    bridge.add_argument("--url", default=None, help="the running server's URL (default: MEMORY_URL)")
    bridge.add_argument(
        "--key", default=None, help="the tenant's service_role or anon key (default: MEMORY_API_KEY)"
    )
    bridge.add_argument(
        "--user-token",
        default=None,
        help="a signed-in user's access token, with the anon key (default: MEMORY_USER_TOKEN)",
    )


def _run_client_command(settings: Settings, args: argparse.Namespace) -> int:
    url = server_url(settings, args.url)
    with AdminClient(settings, url, args.admin_key or known_admin_key(settings)) as client:
        client.check_alive()
        if args.command == "status":
            return cmd_status(client, as_json=args.json)
        if args.tenant_command == "list":
            return cmd_tenant_list(client, as_json=args.json)
        if args.tenant_command == "keys":
            return cmd_tenant_keys(client, args.ref, as_json=args.json)
        return cmd_tenant_create(client, args.name, ref=args.ref, as_json=args.json)


def _run(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "mcp":
        # stdout carries MCP only: no banner, no log lines there.
        from app.cli.mcp_bridge import bridge_target, run_bridge

        return run_bridge(bridge_target(args.url, args.key, args.user_token))
    if args.command in ("status", "tenant"):
        configure_logging(settings.log_format, "warning")
        return _run_client_command(settings, args)
    # The port first, before the service's heavy imports: a second `make run` fails at once.
    sock = bind_socket(settings.host, settings.port)
    from app.cli.serve import run_server

    configure_logging(settings.log_format, settings.log_level)
    return run_server(ensure_admin_key(settings), sock)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return _run(settings, args)
    except CliError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        # Anything unforeseen is still one line; LOG_LEVEL=debug shows where it came from.
        if settings.log_level.lower() == "debug":
            raise
        print(f"error: {type(exc).__name__}: {exc} (LOG_LEVEL=debug shows the traceback)", file=sys.stderr)
        return 1
