"""A small client for the running server's health and admin API: what `status` and `tenant` use.

These commands never open a database themselves, so they describe the server that is
running, not a second embedded one they would start in the current directory.
"""

from __future__ import annotations

from typing import Any

import httpx

from app.cli.admin_key import key_file
from app.cli.errors import CliError
from app.settings import Settings

TIMEOUT_SECONDS = 10.0
# A tenant is a new database and roles: creating one takes longer than a lookup.
CREATE_TIMEOUT_SECONDS = 120.0


def server_url(settings: Settings, explicit: str | None = None) -> str:
    """Where the server listens, as seen from this machine (a wildcard host is reached on loopback)."""
    if explicit:
        return explicit.rstrip("/")
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(settings.host, settings.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


class AdminClient:
    def __init__(self, settings: Settings, url: str, admin_key: str | None) -> None:
        self.url = url
        self.admin_key = admin_key
        self._settings = settings
        self._http = httpx.Client(base_url=url, timeout=TIMEOUT_SECONDS)

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def check_alive(self) -> None:
        try:
            response = self._http.get("/health")
        except httpx.TransportError:
            raise self._unreachable() from None
        if response.status_code != 200:
            raise CliError(f"the server at {self.url} answered /health with {response.status_code}")

    def _unreachable(self) -> CliError:
        return CliError(f"no server at {self.url}: start one with `make run`, or set PORT (or --url) to it")

    def get(self, path: str) -> Any:
        return self._request("GET", path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._request("POST", path, json=body, timeout=CREATE_TIMEOUT_SECONDS)

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        if not self.admin_key:
            raise CliError(
                f"no admin key: set MEM_ADMIN_KEY to the server's (an embedded server writes it to "
                f"{key_file(self._settings)})"
            )
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError:
            raise self._unreachable() from None
        if response.status_code in (401, 403):
            raise CliError(
                f"the server at {self.url} refused the admin key: "
                "set MEM_ADMIN_KEY to the one it was started with"
            )
        if response.status_code >= 400:
            raise CliError(f"{_message(response)} (HTTP {response.status_code} from {method} {path})")
        return response.json()


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("message", body)) if isinstance(body, dict) else str(body)
