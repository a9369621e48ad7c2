"""SQL for mem.memories, mem.memory_history, entity links, session messages and config.

Every query names its owner: the owner clause comes from `owner_clause`, built from the
Owner the service resolved, and is ANDed into each WHERE. A service bug therefore cannot
read across owners through this module.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np

from app.auth.scope import Owner
from app.core.filters import MemoryFilter
from app.db.sql import LIVE, MEMORY_COLUMNS, owner_clause, visibility


async def insert_memory(
    conn: asyncpg.Connection,
    owner: Owner,
    *,
    memory: str,
    embedding: np.ndarray,
    hash_: str,
    memory_type: str,
    metadata: dict[str, Any],
    actor_id: str | None,
    role: str | None,
    expires_at: datetime | None,
    immutable: bool = False,
) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""INSERT INTO mem.memories AS m (user_id, agent_id, run_id, memory, embedding, hash, memory_type,
                metadata, actor_id, role, expires_at, immutable)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
            RETURNING {MEMORY_COLUMNS}""",
        owner.user_id,
        owner.agent_id,
        owner.run_id,
        memory,
        embedding,
        hash_,
        memory_type,
        metadata,
        actor_id,
        role,
        expires_at,
        immutable,
    )


async def find_live_by_hash(conn: asyncpg.Connection, owner: Owner, hash_: str) -> asyncpg.Record | None:
    clause = owner_clause(owner, 2)
    return await conn.fetchrow(
        f"SELECT {MEMORY_COLUMNS} FROM mem.memories m WHERE m.hash = $1 AND {clause.sql} AND {LIVE} LIMIT 1",
        hash_,
        *clause.params,
    )


async def find_by_id_for_owner(
    conn: asyncpg.Connection,
    memory_id: UUID,
    owner: Owner,
    *,
    include_deleted: bool = False,
    for_update: bool = False,
) -> asyncpg.Record | None:
    clause = owner_clause(owner, 2)
    live = "" if include_deleted else f" AND {LIVE}"
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        f"SELECT {MEMORY_COLUMNS} FROM mem.memories m WHERE m.id = $1 AND {clause.sql}{live}{lock}",
        memory_id,
        *clause.params,
    )


async def list_for_owner(
    conn: asyncpg.Connection,
    owner: Owner,
    *,
    filters: MemoryFilter,
    include_expired: bool,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    """One page, newest first, and the total the filters match (so pagination never hides rows)."""
    clause = owner_clause(owner, 1)
    compiled = filters.compile(clause.next_param(1))
    where = f"{clause.sql} AND {visibility(include_expired)} AND ({compiled.sql})"
    params = [*clause.params, *compiled.params]
    total = await conn.fetchval(f"SELECT count(*) FROM mem.memories m WHERE {where}", *params)
    rows = await conn.fetch(
        f"""SELECT {MEMORY_COLUMNS} FROM mem.memories m WHERE {where}
            ORDER BY m.created_at DESC, m.id DESC
            LIMIT ${len(params) + 1} OFFSET ${len(params) + 2}""",
        *params,
        limit,
        offset,
    )
    return list(rows), int(total)


async def update_memory(
    conn: asyncpg.Connection,
    memory_id: UUID,
    owner: Owner,
    *,
    memory: str,
    embedding: np.ndarray | None,
    hash_: str,
    metadata: dict[str, Any],
) -> asyncpg.Record | None:
    """Replace text and metadata; a None embedding keeps the stored one (the text did not change)."""
    clause = owner_clause(owner, 6)
    return await conn.fetchrow(
        f"""UPDATE mem.memories m
            SET memory = $2, embedding = coalesce($3, m.embedding), hash = $4, metadata = $5,
                updated_at = now()
            WHERE m.id = $1 AND {clause.sql} AND {LIVE}
            RETURNING {MEMORY_COLUMNS}""",
        memory_id,
        memory,
        embedding,
        hash_,
        metadata,
        *clause.params,
    )


async def soft_delete(conn: asyncpg.Connection, memory_id: UUID, owner: Owner) -> asyncpg.Record | None:
    clause = owner_clause(owner, 2)
    return await conn.fetchrow(
        f"""UPDATE mem.memories m SET deleted_at = now(), updated_at = now()
            WHERE m.id = $1 AND {clause.sql} AND {LIVE}
            RETURNING {MEMORY_COLUMNS}""",
        memory_id,
        *clause.params,
    )


async def soft_delete_matching(
    conn: asyncpg.Connection, owner: Owner, *, filters: MemoryFilter
) -> list[asyncpg.Record]:
    clause = owner_clause(owner, 1)
    compiled = filters.compile(clause.next_param(1))
    return list(
        await conn.fetch(
            f"""UPDATE mem.memories m SET deleted_at = now(), updated_at = now()
                WHERE {clause.sql} AND {LIVE} AND ({compiled.sql})
                RETURNING {MEMORY_COLUMNS}""",
            *clause.params,
            *compiled.params,
        )
    )


async def insert_history(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    await conn.executemany(
        """INSERT INTO mem.memory_history (memory_id, user_id, agent_id, run_id, event, old_memory,
               new_memory, actor, old_metadata, new_metadata)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        [
            (
                r["memory_id"],
                r["user_id"],
                r["agent_id"],
                r["run_id"],
                r["event"],
                r.get("old_memory"),
                r.get("new_memory"),
                r["actor"],
                r.get("old_metadata"),
                r.get("new_metadata"),
            )
            for r in rows
        ],
    )


async def history_for_owner(conn: asyncpg.Connection, memory_id: UUID, owner: Owner) -> list[asyncpg.Record]:
    clause = owner_clause(owner, 2, alias="h")
    return list(
        await conn.fetch(
            f"""SELECT h.id, h.memory_id, h.event, h.old_memory, h.new_memory, h.old_metadata,
                       h.new_metadata, h.actor, h.created_at
                FROM mem.memory_history h
                WHERE h.memory_id = $1 AND {clause.sql}
                ORDER BY h.id""",
            memory_id,
            *clause.params,
        )
    )


async def record_session_messages(
    conn: asyncpg.Connection, owner: Owner, messages: Sequence[tuple[str, str | None, str]], window: int
) -> None:
    """Append a turn and keep only the last `window` messages of this conversation scope."""
    await conn.executemany(
        """INSERT INTO mem.session_messages (user_id, agent_id, run_id, role, name, content)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        [
            (owner.user_id, owner.agent_id, owner.run_id, role, name, content)
            for role, name, content in messages
        ],
    )
    await conn.execute(
        """DELETE FROM mem.session_messages s
           WHERE s.user_id IS NOT DISTINCT FROM $1 AND s.agent_id IS NOT DISTINCT FROM $2
             AND s.run_id IS NOT DISTINCT FROM $3
             AND s.id < (SELECT min(id) FROM (
                   SELECT id FROM mem.session_messages k
                   WHERE k.user_id IS NOT DISTINCT FROM $1 AND k.agent_id IS NOT DISTINCT FROM $2
                     AND k.run_id IS NOT DISTINCT FROM $3
                   ORDER BY id DESC LIMIT $4) AS keep)""",
        owner.user_id,
        owner.agent_id,
        owner.run_id,
        window,
    )


async def recent_session_messages(
    conn: asyncpg.Connection, owner: Owner, limit: int
) -> list[tuple[str, str | None, str]]:
    """The last messages of this conversation scope, oldest first."""
    rows = await conn.fetch(
        """SELECT role, name, content FROM (
               SELECT s.id, s.role, s.name, s.content FROM mem.session_messages s
               WHERE s.user_id IS NOT DISTINCT FROM $1 AND s.agent_id IS NOT DISTINCT FROM $2
                 AND s.run_id IS NOT DISTINCT FROM $3
               ORDER BY s.id DESC LIMIT $4) AS recent
           ORDER BY id""",
        owner.user_id,
        owner.agent_id,
        owner.run_id,
        limit,
    )
    return [(r["role"], r["name"], r["content"]) for r in rows]


async def stats_for_owner(conn: asyncpg.Connection, owner: Owner, *, top_users: bool) -> dict[str, Any]:
    clause = owner_clause(owner, 1)
    eclause = owner_clause(owner, 1, alias="e")
    hclause = owner_clause(owner, 1, alias="h")
    memories = await conn.fetchval(
        f"SELECT count(*) FROM mem.memories m WHERE {clause.sql} AND {LIVE}", *clause.params
    )
    entities = await conn.fetchval(
        f"SELECT count(*) FROM mem.entities e WHERE {eclause.sql}", *eclause.params
    )
    events = await conn.fetch(
        f"""SELECT h.event, count(*) AS n FROM mem.memory_history h
            WHERE {hclause.sql} AND h.created_at > now() - interval '24 hours'
            GROUP BY h.event""",
        *hclause.params,
    )
    out: dict[str, Any] = {
        "memories": int(memories),
        "entities": int(entities),
        "last_24h": {"adds": 0, "updates": 0, "deletes": 0},
    }
    names = {"ADD": "adds", "UPDATE": "updates", "DELETE": "deletes"}
    for row in events:
        out["last_24h"][names[row["event"]]] = int(row["n"])
    if top_users:
        rows = await conn.fetch(
            f"""SELECT m.user_id, count(*) AS memories FROM mem.memories m
                WHERE {clause.sql} AND {LIVE} AND m.user_id IS NOT NULL
                GROUP BY m.user_id ORDER BY count(*) DESC, m.user_id LIMIT 10""",
            *clause.params,
        )
        out["top_users"] = [{"user_id": r["user_id"], "memories": int(r["memories"])} for r in rows]
    return out


async def owners_for_owner(conn: asyncpg.Connection, owner: Owner) -> list[asyncpg.Record]:
    """Each user, agent and run with live memories in the owner's reach: kind, name, count, times."""
    clause = owner_clause(owner, 1)
    parts = [
        f"""SELECT '{kind}' AS kind, m.{column} AS name, count(*) AS memories,
                   min(m.created_at) AS created_at, max(m.updated_at) AS updated_at
            FROM mem.memories m WHERE {clause.sql} AND {LIVE} AND m.{column} IS NOT NULL
            GROUP BY m.{column}"""
        for kind, column in (("user", "user_id"), ("agent", "agent_id"), ("run", "run_id"))
    ]
    return list(await conn.fetch(" UNION ALL ".join(parts) + " ORDER BY 1, 2", *clause.params))


async def reset_tenant(conn: asyncpg.Connection) -> dict[str, int]:
    """Empty every mem table but the config, the queue of async adds included; the rows removed
    per table.

    Lock order: mem.reset() first takes the memory tables in the writers' order (sql/mem/004), and
    only then are the jobs deleted. A worker's add transaction writes those tables before it marks
    its job SUCCEEDED, so both take the tables before the job rows and cannot deadlock. A job a
    worker is running when the reset commits is gone: its SUCCEEDED update then matches nothing and
    its writes roll back, so no queued add re-adds memories after a reset.
    """
    removed = await conn.fetchval("SELECT mem.reset()")
    if isinstance(removed, str):
        removed = json.loads(removed)
    counts = {str(k): int(v) for k, v in dict(removed).items()}
    deleted = await conn.execute("DELETE FROM mem.jobs")
    counts["jobs"] = int(deleted.split()[-1])
    return counts


async def table_counts(conn: asyncpg.Connection) -> dict[str, int]:
    """Row counts of every mem table (tenant-wide): for reset checks and tests."""
    row = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM mem.memories) AS memories,
                  (SELECT count(*) FROM mem.memory_history) AS memory_history,
                  (SELECT count(*) FROM mem.entities) AS entities,
                  (SELECT count(*) FROM mem.entity_links) AS entity_links,
                  (SELECT count(*) FROM mem.relations) AS relations,
                  (SELECT count(*) FROM mem.graph_history) AS graph_history,
                  (SELECT count(*) FROM mem.session_messages) AS session_messages,
                  (SELECT count(*) FROM mem.jobs) AS jobs,
                  (SELECT count(*) FROM mem.config) AS config"""
    )
    return {k: int(v) for k, v in dict(row).items()}


# --- Studio's overview: counts an owner's (or, for service_role, the tenant's) memories -------------


async def counts_by_type(conn: asyncpg.Connection, owner: Owner) -> dict[str, int]:
    clause = owner_clause(owner, 1)
    rows = await conn.fetch(
        f"""SELECT m.memory_type, count(*) AS n FROM mem.memories m
            WHERE {clause.sql} AND {visibility(False)} GROUP BY m.memory_type""",
        *clause.params,
    )
    return {r["memory_type"]: int(r["n"]) for r in rows}


async def owners_with_counts(conn: asyncpg.Connection, owner: Owner, *, limit: int) -> dict[str, list[Any]]:
    """Per owner field, its most frequent values among live memories: [(value, count), ...]."""
    clause = owner_clause(owner, 2)
    out: dict[str, list[Any]] = {}
    for name in ("user_id", "agent_id", "run_id"):
        rows = await conn.fetch(
            f"""SELECT m.{name} AS value, count(*) AS n FROM mem.memories m
                WHERE {clause.sql} AND {LIVE} AND m.{name} IS NOT NULL
                GROUP BY m.{name} ORDER BY count(*) DESC, m.{name} LIMIT $1""",
            limit,
            *clause.params,
        )
        out[name] = [(r["value"], int(r["n"])) for r in rows]
    return out


async def adds_per_day(conn: asyncpg.Connection, owner: Owner, *, days: int) -> list[tuple[str, int]]:
    """ADD events per UTC day over the last `days` days, oldest first, days without adds included."""
    clause = owner_clause(owner, 2, alias="h")
    rows = await conn.fetch(
        f"""SELECT d::date AS day, count(h.id) AS n
            FROM generate_series((now() AT TIME ZONE 'UTC')::date - ($1::int - 1),
                                 (now() AT TIME ZONE 'UTC')::date, interval '1 day') AS d
            LEFT JOIN mem.memory_history h
              ON (h.created_at AT TIME ZONE 'UTC')::date = d::date AND h.event = 'ADD' AND {clause.sql}
            GROUP BY d ORDER BY d""",
        days,
        *clause.params,
    )
    return [(r["day"].isoformat(), int(r["n"])) for r in rows]
