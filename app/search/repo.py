"""Retrieval SQL: owner-scoped exact vector ranking, and HNSW for tenant-wide scopes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import numpy as np

from app.auth.scope import Owner
from app.memories.repo import MEMORY_COLUMNS, _shift, owner_clause, visibility


async def vector_top_k(
    conn: asyncpg.Connection,
    owner: Owner,
    query: np.ndarray,
    *,
    k: int,
    filter_sql: str,
    filter_params: Sequence[Any],
    include_expired: bool,
) -> list[asyncpg.Record]:
    """The k nearest live memories of the owner by cosine distance, with `similarity` = 1 - distance.

    An owner scope ranks exactly over the rows its btree index selects: a global HNSW
    index with an owner post-filter returns almost nothing when the owner holds a small
    share of the rows. `+ 0` keeps the planner from using HNSW for the ORDER BY.
    Tenant-wide scopes use HNSW with iterative scans so filters don't starve the result.
    """
    clause = owner_clause(owner, 2)
    where = (
        f"{clause.sql} AND {visibility(include_expired)} AND ({_shift(filter_sql, 1 + len(clause.params))})"
    )
    params = [query, *clause.params, *filter_params]
    limit = f"${len(params) + 1}"
    if owner.is_tenant_wide:
        await conn.execute(f"SET LOCAL hnsw.ef_search = {max(40, min(1000, 4 * k))}")
        await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        order = "m.embedding <=> $1"
    else:
        order = "(m.embedding <=> $1) + 0"
    return list(
        await conn.fetch(
            f"""SELECT {MEMORY_COLUMNS}, 1 - (m.embedding <=> $1) AS similarity
                FROM mem.memories m WHERE {where}
                ORDER BY {order} LIMIT {limit}""",
            *params,
            k,
        )
    )
