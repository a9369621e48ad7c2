"""Build DSNs for other databases and roles on the same server as a base DSN."""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit


def with_database(dsn: str, database: str, *, user: str | None = None, password: str | None = None) -> str:
    parts = urlsplit(dsn)
    netloc = parts.netloc
    userinfo, _, hostport = netloc.rpartition("@")
    if user is not None:
        userinfo = quote(user, safe="")
        if password is not None:
            userinfo += ":" + quote(password, safe="")
    netloc = f"{userinfo}@{hostport}" if userinfo else hostport
    return urlunsplit((parts.scheme, netloc, "/" + quote(database, safe=""), parts.query, parts.fragment))


def database_of(dsn: str) -> str:
    path = urlsplit(dsn).path.lstrip("/")
    return path or "postgres"


def redacted(dsn: str) -> str:
    """The DSN without its password, for logs and status output."""
    parts = urlsplit(dsn)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    netloc = f"{user}@{hostport}" if at else hostport
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
