"""Studio's pages at scale: one owner with 10,000 memories, each page timed through the browser's
path (signed-in session cookie, GET over loopback). The target is 300 ms per page (issue 10).

Memories are COPYed in as the latency bench seeds them (random unit vectors: page render time
does not depend on what the vectors say); a few more go through the API, so the owner also has
history rows and entities. Times are wall times on 127.0.0.1, an upper bound of server time.
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import numpy as np

from bench import corpus, latency
from bench.progress import log
from bench.service import Service

TARGET_MS = 300.0
OWNER = "user_big"


def _vectors(n: int, dims: int, seed: int) -> Any:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dims)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def _sign_in(client: httpx.AsyncClient, key: str) -> None:
    page = await client.get("/studio/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    if match is None:
        raise RuntimeError("the sign-in page has no CSRF token")
    r = await client.post("/studio/login", data={"csrf_token": match.group(1), "key": key})
    if r.status_code != 303 or r.headers.get("location") != "/studio/overview":
        raise RuntimeError(f"signing in to Studio failed: {r.status_code}")


async def _add_some(service: Service, key: str, n: int) -> str:
    async with httpx.AsyncClient(base_url=service.url, headers={"apikey": key}, timeout=120) as api:
        first = ""
        for i in range(n):
            r = await api.post(
                "/mem/v1/memories",
                json={
                    "messages": f"Alice met Bob {i} in Paris to talk about Rust",
                    "user_id": OWNER,
                    "infer": False,
                    "metadata": {"source": "bench"},
                },
            )
            r.raise_for_status()
            first = first or r.json()["results"][0]["id"]
    return first


def _pages(memory_id: str, total: int) -> dict[str, str]:
    last = -(-total // 25)
    return {
        "overview": "/studio/overview",
        "memories (owner, page 1)": f"/studio/memories?user_id={OWNER}",
        "memories (owner, last page)": f"/studio/memories?user_id={OWNER}&page={last}",
        "memories (type tab)": f"/studio/memories?user_id={OWNER}&memory_type=LONG_TERM",
        "memories (metadata filter)": f"/studio/memories?user_id={OWNER}&meta_key=source&meta_value=bench",
        "memory detail": f"/studio/memories/{memory_id}",
        "search": f"/studio/search?q=Paris+Rust&user_id={OWNER}",
        "entities + graph": f"/studio/entities?user_id={OWNER}",
        "settings": "/studio/settings",
    }


async def run(
    service: Service, *, memories: int = 10_000, requests: int = 30, seed: int = 42
) -> dict[str, Any]:
    tenant = await service.create_tenant("bench-studio")
    texts = corpus.make_corpus(seed, memories)
    case = latency.Case("studio", texts, _vectors(memories, 384, seed), [OWNER] * memories)
    seeded = await latency.seed(service, tenant, case)
    memory_id = await _add_some(service, tenant.service_role_key, 50)
    total = seeded["rows"] + 50
    log(f"studio: {total} memories for {OWNER}; timing {requests} GETs per page")
    out: dict[str, Any] = {"memories": total, "target_ms": TARGET_MS, "pages": {}}
    async with httpx.AsyncClient(base_url=service.url, timeout=60) as client:
        await _sign_in(client, tenant.service_role_key)
        for name, path in _pages(memory_id, total).items():
            samples = []
            await client.get(path)  # warm: the first query plans, the query embedding cache
            started = time.monotonic()
            for _ in range(requests):
                t = time.perf_counter()
                r = await client.get(path)
                elapsed = time.perf_counter() - t
                if r.status_code != 200:
                    raise RuntimeError(f"studio {name}: {r.status_code}")
                samples.append(elapsed * 1000)
            wall = time.monotonic() - started
            ms = np.asarray(samples)
            out["pages"][name] = {
                "path": path,
                "requests": requests,
                "p50_ms": round(float(np.percentile(ms, 50)), 1),
                "p95_ms": round(float(np.percentile(ms, 95)), 1),
                "max_ms": round(float(ms.max()), 1),
                "rps": round(requests / wall, 1),
            }
    out["all_under_target_p95"] = all(p["p95_ms"] < TARGET_MS for p in out["pages"].values())
    return out
