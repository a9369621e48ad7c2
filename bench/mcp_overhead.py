"""What MCP costs over plain HTTP: `search_memories` through /mcp vs POST /mem/v1/search.

    python -m bench --only mcp          # part of make bench: its own service, one tenant
    python -m bench.mcp_overhead --url http://127.0.0.1:8000 --key <service_role key> \
        [--memories 200] [--queries 200]

Seeds one user's verbatim memories through /mem/v1, then runs the same
queries, one at a time, through both doors (one MCP client session, one HTTP client), alternating
so that both see the same caches, and prints client-side p50/p95/mean per door and the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

from bench.progress import log, percentiles
from bench.service import start_managed

TOPICS = ["tea", "cycling", "jazz", "peanuts", "Rust", "Lisbon", "chess", "sourdough", "cellos", "hiking"]


def _summary(name: str, ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=20)
    p50, mean = statistics.median(ms), statistics.fmean(ms)
    return f"{name:>6}: p50 {p50:7.2f} ms  p95 {q[18]:7.2f} ms  mean {mean:7.2f} ms"


async def measure(url: str, key: str, memories: int, queries: int) -> dict[str, Any]:
    """Client-side milliseconds per search through each door, and the p50 difference."""
    headers = {"apikey": key}
    user = f"bench-mcp-{secrets.token_hex(3)}"
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        for i in range(memories):
            text = f"Fact {i}: the user likes {TOPICS[i % len(TOPICS)]} number {i}"
            r = await http.post("/mem/v1/memories", json={"messages": text, "user_id": user, "infer": False})
            r.raise_for_status()
        async with (
            streamablehttp_client(f"{url.rstrip('/')}/mcp", headers=headers) as (read, write, _),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            await session.list_tools()
            http_ms: list[float] = []
            mcp_ms: list[float] = []
            for i in range(queries):
                body = {
                    "query": f"does the user like {TOPICS[i % len(TOPICS)]}?",
                    "user_id": user,
                    "top_k": 5,
                }
                started = time.perf_counter()
                r = await http.post("/mem/v1/search", json=body)
                http_ms.append((time.perf_counter() - started) * 1000)
                r.raise_for_status()
                started = time.perf_counter()
                result = await session.call_tool("search_memories", body)
                mcp_ms.append((time.perf_counter() - started) * 1000)
                assert not result.isError, result.content
                assert len(json.loads(result.content[0].text)["results"]) == len(r.json()["results"])  # type: ignore[union-attr]
            await session.call_tool("delete_all_memories", {"user_id": user})
    return {
        "memories": memories,
        "queries": queries,
        "http_ms": percentiles(http_ms),
        "mcp_ms": percentiles(mcp_ms),
        "overhead_p50_ms": round(statistics.median(mcp_ms) - statistics.median(http_ms), 3),
        "_raw": (http_ms, mcp_ms),
    }


def summary(result: dict[str, Any]) -> str:
    http_ms, mcp_ms = result["_raw"]
    overhead = result["overhead_p50_ms"]
    return "\n".join(
        [
            f"MCP vs HTTP: {result['queries']} searches over {result['memories']} memories, sequential",
            _summary("http", http_ms),
            _summary("mcp", mcp_ms),
            f"MCP overhead at p50: {overhead:+.2f} ms ({overhead / statistics.median(http_ms):+.0%})",
        ]
    )


async def run_managed(data_dir: Path, log_path: Path, *, memories: int, queries: int) -> dict[str, Any]:
    """The same measure on a service of its own (what `make bench` runs)."""
    service = await start_managed(data_dir, log_path)
    try:
        tenant = await service.create_tenant("bench-mcp")
        log(f"mcp: {queries} searches through /mem/v1/search and through MCP search_memories")
        result = await measure(service.url, tenant.headers["apikey"], memories, queries)
    finally:
        await service.stop()
    print(summary(result))
    result.pop("_raw")
    return result


async def run(url: str, key: str, memories: int, queries: int) -> None:
    print(summary(await measure(url, key, memories, queries)))


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.mcp_overhead", description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--key", required=True, help="a service_role key")
    p.add_argument("--memories", type=int, default=200)
    p.add_argument("--queries", type=int, default=200)
    args = p.parse_args()
    asyncio.run(run(args.url, args.key, args.memories, args.queries))


if __name__ == "__main__":
    main()
