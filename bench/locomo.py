"""LoCoMo retrieval quality, exactly the protocol of /work/shared/bench/README.md §1:
fused (the default search) and dense-only (`"signals": ["semantic"]`), recall@5/@10 per category;
and fused without the graph signal (semantic, keyword, entity), so the graph's effect is measured
on the same stored turns (offline: the heuristic's co-mention relations)."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from bench import metrics
from bench.client import Sample, new_client, run_bounded, summarise
from bench.progress import log
from bench.service import Service

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
KS = (5, 10)
DENSE_SIGNALS = ["semantic"]
NO_GRAPH_SIGNALS = ["semantic", "keyword", "entity"]


def load(path: Path, max_samples: int | None = None) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(path.read_text())
    return data[:max_samples] if max_samples else data


def turns(sample: dict[str, Any]) -> list[dict[str, Any]]:
    """Every turn of every session, in order, as the add body of the protocol."""
    conv = sample["conversation"]
    sessions = sorted((int(m.group(1)), key) for key in conv if (m := re.fullmatch(r"session_(\d+)", key)))
    out = []
    for n, key in sessions:
        date = conv.get(f"{key}_date_time", "")
        for turn in conv[key] or []:
            out.append(
                {
                    "messages": [{"role": "user", "content": f"{turn['speaker']}: {turn['text']}"}],
                    "user_id": sample["sample_id"],
                    "infer": False,
                    "metadata": {"dia_id": turn["dia_id"], "session": n, "session_date": date},
                }
            )
    return out


def qa_items(sample: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {**qa, "sample_id": sample["sample_id"]}
        for qa in sample["qa"]
        if qa.get("category") in CATEGORIES and qa.get("evidence")
    ]


async def probe_signals(client: Any, user_id: str, query: str) -> dict[str, Any]:
    """Does the search API take `signals`? A bogus signal name tells validated from silently ignored."""
    base = {"query": query, "user_id": user_id, "top_k": 10}
    sem = await client.post("/mem/v1/search", json={**base, "signals": DENSE_SIGNALS})
    bogus = await client.post("/mem/v1/search", json={**base, "signals": ["no_such_signal"]})
    if sem.status_code >= 400:
        status = "rejected"
        detail = f'"signals": ["semantic"] -> {sem.status_code} {sem.text[:300]}'
    elif 400 <= bogus.status_code < 500:
        status = "supported"
        detail = f"signals accepted; an unknown signal name is refused ({bogus.status_code})"
    else:
        status = "not_validated"
        detail = (
            "signals accepted, but an unknown signal name is accepted too (status "
            f"{bogus.status_code}): the field may be silently ignored"
        )
    return {
        "status": status,
        "detail": detail,
        "semantic_status": sem.status_code,
        "bogus_status": bogus.status_code,
    }


def _recall(
    items: list[dict[str, Any]],
    samples: list[Sample],
    mem_dias: dict[str, set[str]],
) -> dict[str, Any]:
    per_cat: dict[str, dict[int, list[float]]] = defaultdict(lambda: {k: [] for k in KS})
    overall: dict[int, list[float]] = {k: [] for k in KS}
    nonsemantic_hits = 0
    rankings: dict[int, list[str]] = {}
    for sample in samples:
        if not sample.ok or not isinstance(sample.body, dict):
            continue
        item = items[sample.index]
        evidence = set(item["evidence"])
        results = sample.body.get("results", [])
        ids = [str(r.get("id")) for r in results]
        rankings[sample.index] = ids
        for r in results:
            b = r.get("score_breakdown") or {}
            if any((b.get(s) or 0) > 0 for s in ("keyword", "entity", "graph")):
                nonsemantic_hits += 1
        cat = CATEGORIES[item["category"]]
        for k in KS:
            found: set[str] = set()
            for r in results[:k]:
                dias = mem_dias.get(str(r.get("id")))
                if dias is None:  # not one we added: fall back to its metadata
                    dias = {str((r.get("metadata") or {}).get("dia_id"))}
                found |= dias
            value = len(evidence & found) / len(evidence)
            overall[k].append(value)
            per_cat[cat][k].append(value)

    def block(values: dict[int, list[float]]) -> dict[str, Any]:
        n = len(values[KS[0]])
        return {
            "n": n,
            **{f"recall@{k}": round(100 * sum(v) / n, 2) if n else None for k, v in values.items()},
        }

    return {
        "overall": block(overall),
        "per_category": {CATEGORIES[c]: block(per_cat[CATEGORIES[c]]) for c in sorted(CATEGORIES)},
        "results_with_keyword_or_entity_score": nonsemantic_hits,
        "_rankings": rankings,
    }


def _dataset(
    data: list[dict[str, Any]], path: Path, tenant_ref: str
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """The dataset part of the result, the add bodies, and the QA items of `data`."""
    add_bodies = [body for sample in data for body in turns(sample)]
    items = [item for sample in data for item in qa_items(sample)]
    turn_ids = {(b["user_id"], b["metadata"]["dia_id"]) for b in add_bodies}
    unknown = sorted({e for i in items for e in i["evidence"] if (i["sample_id"], e) not in turn_ids})
    out = {
        "dataset": str(path),
        "samples": [s["sample_id"] for s in data],
        "tenant": tenant_ref,
        "turns": len(add_bodies),
        "qa_items": len(items),
        "qa_items_per_category": dict(Counter(CATEGORIES[i["category"]] for i in items)),
        # kept verbatim, as the protocol says; they count as misses
        "evidence_ids_not_in_any_turn": unknown,
    }
    return out, add_bodies, items


async def _add_all(
    client: Any,
    service: Service,
    add_bodies: list[dict[str, Any]],
    *,
    concurrency: int,
    time_cap: float,
) -> tuple[dict[str, Any], dict[str, set[str]]]:
    """Store every turn, concurrently, over HTTP. Returns the add summary and memory id -> dia ids."""
    before = await metrics.snapshot(service.url, service.admin_key)
    adds, wall = await run_bounded(
        client,
        "/mem/v1/memories",
        add_bodies,
        concurrency=concurrency,
        time_cap=time_cap,
        phase="locomo/add",
        keep_body=True,
    )
    events: Counter[str] = Counter()
    mem_dias: dict[str, set[str]] = defaultdict(set)
    for s in adds:
        if not s.ok:
            continue
        body = add_bodies[s.index]
        for result in s.body.get("results", []):
            events[str(result.get("event"))] += 1
            mem_id = str(result["id"])
            dia = body["metadata"]["dia_id"]
            mem_dias[mem_id].add(dia)
    add_summary = summarise(adds, wall, planned=len(add_bodies))
    add_summary["metrics_delta"] = metrics.delta(
        before, await metrics.snapshot(service.url, service.admin_key), per=max(1, add_summary["ok"])
    )
    add_summary.update(
        events=dict(events),
        memories=len(mem_dias),
        duplicate_turns_mapped=sum(len(d) - 1 for d in mem_dias.values()),
        concurrency=concurrency,
        adds_per_s=add_summary["throughput_rps"],
    )
    if add_summary["errors"]:
        log(f"locomo: {add_summary['errors']} adds failed, e.g. {add_summary.get('error_examples')}")
    return add_summary, mem_dias


async def _measured_search(
    client: Any,
    service: Service,
    mode: str,
    bodies: list[dict[str, Any]],
    items: list[dict[str, Any]],
    mem_dias: dict[str, set[str]],
    *,
    concurrency: int,
    time_cap: float,
) -> dict[str, Any]:
    """One measured search pass (fused or dense-only): its recall and latency."""
    before = await metrics.snapshot(service.url, service.admin_key)
    samples, wall = await run_bounded(
        client,
        "/mem/v1/search",
        bodies,
        concurrency=concurrency,
        time_cap=time_cap,
        phase=f"locomo/search-{mode}",
        keep_body=True,
    )
    latency = summarise(samples, wall, planned=len(bodies))
    latency["metrics_delta"] = metrics.delta(before, await metrics.snapshot(service.url, service.admin_key))
    return {
        **_recall(items, samples, mem_dias),
        "latency": latency,
        "concurrency": concurrency,
    }


def _compare(out: dict[str, Any], runs: dict[str, Any]) -> None:
    """The fused-vs-dense comparison (gap, identical rankings, notes), into `out`."""
    fused, dense = runs["fused"], runs.get("dense")
    if runs.get("no_graph") is not None:
        # What the graph signal adds: the default search minus the same search without it.
        out["graph_gap_points"] = _gap(fused, runs["no_graph"])
        graphed = sum(
            1 for i, ids in fused["_rankings"].items() if runs["no_graph"]["_rankings"].get(i) != ids
        )
        out["graph_changed_rankings"] = {"items": graphed, "of": len(fused["_rankings"])}
    if dense is None:
        out["dense_note"] = "dense-only run skipped: the API rejected the `signals` field"
    else:
        out["gap_points"] = _gap(fused, dense)
        same = sum(1 for i, ids in fused["_rankings"].items() if dense["_rankings"].get(i) == ids)
        out["identical_rankings"] = {"items": same, "of": len(fused["_rankings"])}
        if same == len(fused["_rankings"]):
            out["dense_note"] = (
                "fused and dense-only rankings are identical for every item: the service has no "
                "fusion yet, or it ignores `signals`"
            )
        elif dense["results_with_keyword_or_entity_score"]:
            out["dense_note"] = (
                "the dense-only run returned results with keyword/entity scores: `signals` seems ignored"
            )
    for r in runs.values():
        r.pop("_rankings", None)


async def run(
    service: Service,
    path: Path,
    *,
    max_samples: int | None,
    add_concurrency: int,
    search_concurrency: int,
    time_cap: float,
) -> dict[str, Any]:
    data = load(path, max_samples)
    tenant = await service.create_tenant("bench-locomo")
    log(f"locomo: tenant {tenant.ref}, {len(data)} conversations from {path}")
    out, add_bodies, items = _dataset(data, path, tenant.ref)

    async with new_client(service.url, tenant.headers, max(add_concurrency, 16)) as client:
        # 1. Store every turn, concurrently, over HTTP.
        out["add"], mem_dias = await _add_all(
            client, service, add_bodies, concurrency=add_concurrency, time_cap=time_cap
        )

        # 2. Does the API take `signals` (dense-only)?
        out["signals"] = await probe_signals(client, items[0]["sample_id"], items[0]["question"])
        log(f"locomo: signals {out['signals']['status']}: {out['signals']['detail']}")

        # 3. Warm the query-embedding cache (each question once), so both measured runs see cached
        #    embeddings and compare retrieval alone; this pass is the uncached latency.
        base = [{"query": i["question"], "user_id": i["sample_id"], "top_k": 10} for i in items]
        warm, wall = await run_bounded(
            client, "/mem/v1/search", base, concurrency=16, time_cap=time_cap, phase="locomo/warm-cache"
        )
        out["search_uncached_c16"] = summarise(warm, wall, planned=len(base))

        # 4. The measured runs: fused, and dense-only unless the API refuses `signals`.
        modes = [("fused", base)]
        if out["signals"]["status"] != "rejected":
            modes.append(("dense", [{**b, "signals": DENSE_SIGNALS} for b in base]))
            modes.append(("no_graph", [{**b, "signals": NO_GRAPH_SIGNALS} for b in base]))
        runs: dict[str, Any] = {}
        for mode, bodies in modes:
            runs[mode] = await _measured_search(
                client,
                service,
                mode,
                bodies,
                items,
                mem_dias,
                concurrency=search_concurrency,
                time_cap=time_cap,
            )
        out["runs"] = runs

    _compare(out, runs)
    return out


def _gap(fused: dict[str, Any], dense: dict[str, Any]) -> dict[str, Any]:
    def diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        return {
            f"recall@{k}": round(a[f"recall@{k}"] - b[f"recall@{k}"], 2)
            if a[f"recall@{k}"] is not None and b[f"recall@{k}"] is not None
            else None
            for k in KS
        }

    return {
        "overall": diff(fused["overall"], dense["overall"]),
        "per_category": {
            c: diff(fused["per_category"][c], dense["per_category"][c]) for c in fused["per_category"]
        },
    }
