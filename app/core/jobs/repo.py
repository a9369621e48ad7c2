"""SQL on mem.jobs. Every read names its owner; the queue operations name the claim they hold."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from app.auth.scope import Owner
from app.db.sql import owner_clause

JOB_COLUMNS = """j.id, j.kind, j.scope_role, j.scope_user_id, j.scope_session_id, j.user_id, j.agent_id,
    j.run_id, j.payload, j.status, j.attempts, j.next_run_at, j.claim_token, j.lease_until, j.error_code,
    j.error_message, j.result, j.request_id, j.created_at, j.updated_at, j.started_at, j.finished_at"""


async def insert_job(
    conn: asyncpg.Connection,
    *,
    scope_role: str,
    scope_user_id: str | None,
    scope_session_id: str | None,
    owner: Owner,
    payload: dict[str, Any],
    request_id: str | None,
) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO mem.jobs AS j (scope_role, scope_user_id, scope_session_id, user_id, agent_id,
                run_id, payload, request_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            RETURNING {JOB_COLUMNS}""",
        scope_role,
        scope_user_id,
        scope_session_id,
        owner.user_id,
        owner.agent_id,
        owner.run_id,
        payload,
        request_id,
    )


async def find_for_owner(conn: asyncpg.Connection, job_id: UUID, owner: Owner) -> asyncpg.Record | None:
    where = owner_clause(owner, 2, alias="j")
    return await conn.fetchrow(
        f"SELECT {JOB_COLUMNS} FROM mem.jobs j WHERE j.id = $1 AND {where.sql}", job_id, *where.params
    )


async def list_for_owner(
    conn: asyncpg.Connection, owner: Owner, *, status: str | None, limit: int, offset: int
) -> tuple[list[asyncpg.Record], int]:
    where = owner_clause(owner, 1, alias="j")
    params: list[Any] = list(where.params)
    condition = where.sql
    if status is not None:
        params.append(status)
        condition += f" AND j.status = ${len(params)}"
    total = await conn.fetchval(f"SELECT count(*) FROM mem.jobs j WHERE {condition}", *params)
    rows = await conn.fetch(
        f"""SELECT {JOB_COLUMNS} FROM mem.jobs j WHERE {condition}
            ORDER BY j.created_at DESC, j.id LIMIT ${len(params) + 1} OFFSET ${len(params) + 2}""",
        *params,
        limit,
        offset,
    )
    return rows, int(total)


async def status_counts(conn: asyncpg.Connection, owner: Owner) -> dict[str, int]:
    """How many of an owner's jobs (a tenant-wide service scope: all of them) are in each status."""
    where = owner_clause(owner, 1, alias="j")
    rows = await conn.fetch(
        f"SELECT j.status, count(*) AS n FROM mem.jobs j WHERE {where.sql} GROUP BY j.status", *where.params
    )
    return {r["status"]: int(r["n"]) for r in rows}


# Claiming: one statement locks the oldest candidate (SKIP LOCKED: never waits on, nor takes, a
# row another worker is claiming) and marks it RUNNING under a fresh token and lease.
_CLAIM = f"""UPDATE mem.jobs j
    SET status = 'RUNNING', attempts = j.attempts + 1, claim_token = $1,
        lease_until = now() + make_interval(secs => $2), started_at = now(), updated_at = now()
    WHERE j.id = (SELECT id FROM mem.jobs WHERE {{candidates}} ORDER BY {{order}} LIMIT 1
                  FOR UPDATE SKIP LOCKED)
    RETURNING {JOB_COLUMNS}"""
CLAIM_EXPIRED = _CLAIM.format(candidates="status = 'RUNNING' AND lease_until < now()", order="lease_until")
CLAIM_PENDING = _CLAIM.format(candidates="status = 'PENDING' AND next_run_at <= now()", order="next_run_at")


async def claim_next(conn: asyncpg.Connection, token: UUID, lease_seconds: float) -> asyncpg.Record | None:
    """The next job to run, now RUNNING under `token`: first one whose worker's lease ran out, else
    the longest-due PENDING one. Two statements: each uses its own partial index."""
    row = await conn.fetchrow(CLAIM_EXPIRED, token, lease_seconds)
    if row is None:
        row = await conn.fetchrow(CLAIM_PENDING, token, lease_seconds)
    return row


async def renew_lease(conn: asyncpg.Connection, job_id: UUID, token: UUID, lease_seconds: float) -> bool:
    status = await conn.execute(
        """UPDATE mem.jobs SET lease_until = now() + make_interval(secs => $3)
            WHERE id = $1 AND claim_token = $2 AND status = 'RUNNING'""",
        job_id,
        token,
        lease_seconds,
    )
    return bool(status == "UPDATE 1")


async def mark_succeeded(
    conn: asyncpg.Connection, job_id: UUID, token: UUID, result: dict[str, Any]
) -> asyncpg.Record | None:
    """SUCCEEDED, only while `token` still holds the job: None when another attempt took it over.

    Runs in the add's own transaction, so the writes and this status commit together or not at all.
    """
    return await conn.fetchrow(
        f"""UPDATE mem.jobs j SET status = 'SUCCEEDED', result = $3, claim_token = NULL,
                lease_until = NULL, error_code = NULL, error_message = NULL,
                finished_at = now(), updated_at = now()
            WHERE j.id = $1 AND j.claim_token = $2 AND j.status = 'RUNNING'
            RETURNING {JOB_COLUMNS}""",
        job_id,
        token,
        result,
    )


async def mark_retry(
    conn: asyncpg.Connection, job_id: UUID, token: UUID, *, delay_seconds: float, code: str, message: str
) -> bool:
    status = await conn.execute(
        """UPDATE mem.jobs SET status = 'PENDING', claim_token = NULL, lease_until = NULL,
                next_run_at = now() + make_interval(secs => $3), error_code = $4, error_message = $5,
                updated_at = now()
            WHERE id = $1 AND claim_token = $2 AND status = 'RUNNING'""",
        job_id,
        token,
        delay_seconds,
        code,
        message,
    )
    return bool(status == "UPDATE 1")


async def mark_failed(
    conn: asyncpg.Connection, job_id: UUID, token: UUID, *, code: str, message: str
) -> bool:
    status = await conn.execute(
        """UPDATE mem.jobs SET status = 'FAILED', claim_token = NULL, lease_until = NULL,
                error_code = $3, error_message = $4, finished_at = now(), updated_at = now()
            WHERE id = $1 AND claim_token = $2 AND status = 'RUNNING'""",
        job_id,
        token,
        code,
        message,
    )
    return bool(status == "UPDATE 1")


async def release(conn: asyncpg.Connection, job_id: UUID, token: UUID) -> bool:
    """Back to PENDING at once, the attempt not counted: the process is stopping, not the job failing."""
    status = await conn.execute(
        """UPDATE mem.jobs SET status = 'PENDING', claim_token = NULL, lease_until = NULL,
                attempts = greatest(attempts - 1, 0), next_run_at = now(), updated_at = now()
            WHERE id = $1 AND claim_token = $2 AND status = 'RUNNING'""",
        job_id,
        token,
    )
    return bool(status == "UPDATE 1")


async def queue_state(conn: asyncpg.Connection) -> asyncpg.Record:
    """Jobs waiting and running, and in how many seconds the next one may be taken (None: no job)."""
    return await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE status = 'PENDING') AS pending,
                  count(*) FILTER (WHERE status = 'RUNNING') AS running,
                  extract(epoch FROM least(min(next_run_at) FILTER (WHERE status = 'PENDING'),
                                           min(lease_until) FILTER (WHERE status = 'RUNNING'))
                                     - now())::float8 AS due_in
             FROM mem.jobs WHERE status IN ('PENDING', 'RUNNING')"""
    )
