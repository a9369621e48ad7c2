"""Deadlocks and serialization failures: a 503 database_busy with Retry-After, and a reset's
savepoint retry that runs the work again after one."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from app.db.session import RETRY_ATTEMPTS, RowClaims, TenantSession
from app.errors import ErrorBody
from app.http.errors import postgres_error_handler


@pytest.mark.parametrize("error", [asyncpg.DeadlockDetectedError, asyncpg.SerializationError])
def test_a_deadlock_or_serialization_failure_is_a_503_database_busy(error: type[Exception]) -> None:
    response = postgres_error_handler(None, error("deadlock detected"))  # type: ignore[arg-type]

    assert response.status_code == 503
    assert response.headers == {"Retry-After": "1"}
    assert isinstance(response.content, ErrorBody)
    assert response.content.code == "database_busy"


class _Savepoint:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: Any) -> bool:
        return False


class _Conn:
    def __init__(self) -> None:
        self.savepoints = 0

    def transaction(self) -> _Savepoint:
        self.savepoints += 1
        return _Savepoint()


def _session(conn: _Conn) -> TenantSession:
    session = TenantSession(pool=None, claims=RowClaims.service())  # type: ignore[arg-type]
    session._conn = conn  # type: ignore[assignment]  # as if the request's transaction were open
    return session


async def test_retry_alone_runs_the_work_again_after_a_deadlock() -> None:
    conn = _Conn()
    calls: list[int] = []

    async def work(_: Any) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise asyncpg.DeadlockDetectedError("deadlock detected")
        return "done"

    assert await _session(conn).retry_alone(work) == "done"
    assert len(calls) == 3 and conn.savepoints == 3


async def test_retry_alone_gives_up_after_its_attempts_and_raises_the_last_failure() -> None:
    conn = _Conn()

    async def work(_: Any) -> None:
        raise asyncpg.SerializationError("could not serialize access")

    with pytest.raises(asyncpg.SerializationError):
        await _session(conn).retry_alone(work)
    assert conn.savepoints == RETRY_ATTEMPTS


async def test_retry_alone_does_not_retry_other_errors() -> None:
    conn = _Conn()

    async def work(_: Any) -> None:
        raise asyncpg.UniqueViolationError("duplicate")

    with pytest.raises(asyncpg.UniqueViolationError):
        await _session(conn).retry_alone(work)
    assert conn.savepoints == 1
