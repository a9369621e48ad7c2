"""infer=true against a fake LLM of fixed latency (0 ms and 300 ms): LLM calls per add,
embedding calls per add, the service's own overhead per add, and adds/s at concurrency 16.

The chat and embedding providers are the fake server of testsupport/ on 127.0.0.1 (the real
`openai` client talks to it), so the counts are exact and the only model latency is the one
injected: overhead = client latency - injected LLM latency.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bench.client import new_client, run_bounded, summarise
from bench.progress import log, percentiles
from bench.service import start_managed
from testsupport.provider_server import FakeProviderServer, Fault

LATENCIES_S = (0.0, 0.3)
_MESSAGES = re.compile(r"NEW MESSAGES:\n(.*)$", re.DOTALL)
_CANDIDATE = re.compile(r"- (m\d+): ")


def _answer(payload: dict[str, Any]) -> str:
    """A plausible model: one fact per user message; it UPDATEs the first candidate every third add."""
    prompt = "\n".join(str(m.get("content")) for m in payload.get("messages", []))
    found = _MESSAGES.search(prompt)
    lines = [
        line.split(": ", 1)[1] for line in (found.group(1) if found else "").splitlines() if ": " in line
    ]
    candidates = _CANDIDATE.findall(prompt)
    facts = []
    for text in lines:
        if candidates and len(text) % 3 == 0:
            facts.append(
                {"text": text, "event": "UPDATE", "target": candidates[0], "memory_type": "LONG_TERM"}
            )
        else:
            facts.append(
                {
                    "text": text,
                    "event": "ADD",
                    "memory_type": "LONG_TERM",
                    "entities": [{"text": "Lisbon", "type": "place"}],
                }
            )
    return json.dumps({"facts": facts})


def _bodies(n: int, users: int, salt: str) -> list[dict[str, Any]]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"I went to Lisbon for the {salt} trip number {i}, loved it"}
            ],
            "user_id": f"user_{i % users:03d}",
        }
        for i in range(n)
    ]


async def run(data_dir: Path, log_path: Path, *, adds: int, adds_c16: int, time_cap: float) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": "single", "settings": {}}
    with FakeProviderServer(embedding_dims=384) as fake:
        fake.chat_responder = _answer
        env = {
            "NUBASE_MEM_CHAT_PROVIDER": "generic",
            "NUBASE_MEM_CHAT_BASE_URL": fake.openai_base_url,
            "NUBASE_MEM_CHAT_MODEL": "fake-chat",
            "NUBASE_MEM_CHAT_API_KEY": "bench",
            "NUBASE_MEM_EMBEDDING_PROVIDER": "generic",
            "NUBASE_MEM_EMBEDDING_BASE_URL": fake.openai_base_url,
            "NUBASE_MEM_EMBEDDING_MODEL": "fake-embed",
            "NUBASE_MEM_EMBEDDING_API_KEY": "bench",
            "NUBASE_MEM_PROVIDER_CONCURRENCY": "32",
        }
        service = await start_managed(data_dir, log_path, extra_env=env)
        try:
            for latency in LATENCIES_S:
                label = f"llm_{int(latency * 1000)}ms"
                tenant = await service.create_tenant(f"bench-pipeline-{label}")
                fake.set_fault(Fault(delay=latency) if latency else None, family="chat")
                case: dict[str, Any] = {"llm_latency_ms": latency * 1000}
                for concurrency, n in ((1, adds), (16, adds_c16)):
                    chat_before, embed_before = fake.count("chat"), fake.count("embeddings")
                    async with new_client(service.url, tenant.headers, concurrency) as client:
                        samples, wall = await run_bounded(
                            client,
                            "/mem/v1/memories",
                            _bodies(n, 50, f"{label}-c{concurrency}"),
                            concurrency=concurrency,
                            time_cap=time_cap,
                            phase=f"pipeline/{label}/c{concurrency}",
                        )
                    summary = summarise(samples, wall, planned=n)
                    done = max(summary["ok"], 1)
                    summary["llm_calls_per_add"] = round((fake.count("chat") - chat_before) / done, 3)
                    summary["embedding_calls_per_add"] = round(
                        (fake.count("embeddings") - embed_before) / done, 3
                    )
                    overhead = [s.client_ms - latency * 1000 for s in samples if s.ok]
                    if overhead:
                        summary["overhead_ms"] = percentiles(overhead)
                    case[f"c{concurrency}"] = summary
                    log(
                        f"pipeline {label} c={concurrency}: {summary['ok']}/{n} ok, "
                        f"{summary['throughput_rps']} adds/s, LLM calls/add {summary['llm_calls_per_add']}, "
                        f"embedding calls/add {summary['embedding_calls_per_add']}"
                    )
                out[label] = case
            fake.set_fault(None, family="chat")
            out["rss_bytes"] = service.rss_bytes()
        finally:
            await service.stop()
    return out
