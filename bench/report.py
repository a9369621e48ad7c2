"""Machine info, the JSON result files, and the summary tables printed at the end."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict[str, Any]:
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_total = None
    try:
        import psutil

        mem_total = int(psutil.virtual_memory().total)
    except ImportError:
        pass
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_total_bytes": mem_total,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_modified_files": len(status.splitlines()) if status is not None else None,
        "loadavg_start": list(os.getloadavg()),
    }


def write(results: dict[str, Any], out_dir: Path = RESULTS) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"{stamp}.json"
    text = json.dumps(results, indent=2, default=str)
    path.write_text(text)
    (out_dir / "latest.json").write_text(text)
    return path


def _ratio(a: Any, b: Any) -> float | None:
    return round(a / b, 2) if isinstance(a, int | float) and isinstance(b, int | float) and b else None


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """Ratios measured within this run: more robust than absolute times on a shared, noisy machine."""
    out: dict[str, Any] = {}
    loc = results.get("locomo") or {}
    runs = loc.get("runs") or {}
    if "fused" in runs and "dense" in runs:
        f, d = runs["fused"]["latency"], runs["dense"]["latency"]
        out["locomo_fused_over_dense_client_p50"] = _ratio(f["client_ms"]["p50"], d["client_ms"]["p50"])
        out["locomo_fused_over_dense_server_p50"] = _ratio(
            f["server_retrieval_ms"]["p50"], d["server_retrieval_ms"]["p50"]
        )
    cases = (results.get("latency") or {}).get("cases") or {}
    per_case: dict[str, Any] = {}
    for label, case in cases.items():
        search = case.get("search") or {}
        c1, c16 = search.get("c1"), search.get("c16")
        entry: dict[str, Any] = {}
        if c1:
            entry["server_share_of_client_p50_c1"] = _ratio(
                c1["server_retrieval_ms"]["p50"], c1["client_ms"]["p50"]
            )
            floor = (case.get("db_floor") or {}).get("ms", {}).get("p50")
            entry["server_retrieval_over_db_scan_p50_c1"] = _ratio(c1["server_retrieval_ms"]["p50"], floor)
        if c1 and c16:
            entry["throughput_c16_over_c1"] = _ratio(c16["throughput_rps"], c1["throughput_rps"])
            entry["client_p50_c16_over_c1"] = _ratio(c16["client_ms"]["p50"], c1["client_ms"]["p50"])
        per_case[label] = entry
    if per_case:
        out["per_case"] = per_case
    sized = [(c["memories"], c) for label, c in cases.items() if c.get("users", 0) > 1 and "search" in c]
    if len(sized) >= 2:
        (n0, small), (n1, big) = min(sized, key=lambda t: t[0]), max(sized, key=lambda t: t[0])
        s1, b1 = small["search"].get("c1"), big["search"].get("c1")
        if s1 and b1:
            out[f"c1_client_p50_{n1}_over_{n0}"] = _ratio(b1["client_ms"]["p50"], s1["client_ms"]["p50"])
            out[f"c1_server_p50_{n1}_over_{n0}"] = _ratio(
                b1["server_retrieval_ms"]["p50"], s1["server_retrieval_ms"]["p50"]
            )
    return out


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[_f(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(
        h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True))
    )
    sep = "  ".join("-" * w for w in widths)
    body = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in cells
    ]
    return "\n".join([line, sep, *body])


def _mb(value: Any) -> Any:
    return round(value / 2**20, 1) if isinstance(value, int) else None


def _gap(f: dict[str, Any], d: dict[str, Any] | None, key: str) -> Any:
    return (f[key] - d[key]) if d and f[key] is not None else None


def _locomo_recall_table(runs: dict[str, Any]) -> str:
    fused, dense = runs["fused"], runs.get("dense")
    blocks = [("overall", fused["overall"], dense["overall"] if dense else None)]
    for cat, block in fused["per_category"].items():
        blocks.append((cat, block, dense["per_category"][cat] if dense else None))
    rows = [
        [
            name,
            f["n"],
            f["recall@5"],
            d["recall@5"] if d else None,
            _gap(f, d, "recall@5"),
            f["recall@10"],
            d["recall@10"] if d else None,
            _gap(f, d, "recall@10"),
        ]
        for name, f, d in blocks
    ]
    return _table(["category", "n", "fused@5", "dense@5", "gap@5", "fused@10", "dense@10", "gap@10"], rows)


def _locomo_graph_table(runs: dict[str, Any]) -> str:
    """Recall@10 of the default search with and without the graph signal, per category."""
    fused, plain = runs["fused"], runs["no_graph"]
    blocks = [("overall", fused["overall"], plain["overall"])]
    blocks += [(c, b, plain["per_category"][c]) for c, b in fused["per_category"].items()]
    rows = [
        [name, f["n"], p["recall@10"], f["recall@10"], _gap(f, p, "recall@10"), _gap(f, p, "recall@5")]
        for name, f, p in blocks
    ]
    return _table(["category", "n", "no-graph@10", "graph@10", "gain@10", "gain@5"], rows)


def _latency_row(label: str, lat: dict[str, Any]) -> list[Any]:
    return [
        label,
        lat["client_ms"]["p50"],
        lat["client_ms"]["p95"],
        lat["server_retrieval_ms"]["p50"],
        lat["server_retrieval_ms"]["p95"],
        lat["errors"],
    ]


def _locomo_latency_table(loc: dict[str, Any]) -> str:
    lat_rows = [
        _latency_row(f"search {mode} c={run['concurrency']}", run["latency"])
        for mode, run in loc["runs"].items()
    ]
    lat_rows.append(_latency_row("search uncached query c=16", loc["search_uncached_c16"]))
    add = loc["add"]
    lat_rows.append(
        [
            f"add infer=false c={add['concurrency']} ({add['adds_per_s']} adds/s)",
            add["client_ms"]["p50"],
            add["client_ms"]["p95"],
            None,
            None,
            add["errors"],
        ]
    )
    return _table(["LoCoMo latency (ms)", "p50", "p95", "server p50", "server p95", "errors"], lat_rows)


def _locomo_notes(loc: dict[str, Any]) -> list[str]:
    notes = [f"signals: {loc['signals']['status']} ({loc['signals']['detail']})"]
    if loc.get("dense_note"):
        notes.append(loc["dense_note"])
    if loc.get("evidence_ids_not_in_any_turn"):
        notes.append(
            f"evidence ids matching no turn (kept, count as misses): {loc['evidence_ids_not_in_any_turn']}"
        )
    return ["note: " + n for n in notes]


def _locomo_summary(loc: dict[str, Any]) -> list[str]:
    return [
        f"LoCoMo retrieval ({len(loc['samples'])} conversations, {loc['turns']} turns, "
        f"{loc['qa_items']} questions; recall in %, fused vs dense-only)",
        _locomo_recall_table(loc["runs"]),
        "",
        *(
            ["Graph signal (default search with vs without `graph`)", _locomo_graph_table(loc["runs"]), ""]
            if "no_graph" in loc["runs"]
            else []
        ),
        _locomo_latency_table(loc),
        "",
        *_locomo_notes(loc),
    ]


def _search_latency_table(cases: dict[str, Any]) -> str:
    rows = [
        [
            label,
            m["concurrency"],
            m["ok"],
            m["client_ms"]["p50"],
            m["client_ms"]["p95"],
            m["client_ms"]["p99"],
            m["server_retrieval_ms"]["p50"],
            m["server_retrieval_ms"]["p95"],
            m["server_retrieval_ms"]["p99"],
            m["throughput_rps"],
            m["errors"],
        ]
        for label, case in cases.items()
        if "search" in case
        for m in case["search"].values()
    ]
    return _table(
        ["case", "conc", "n", "p50", "p95", "p99", "srv p50", "srv p95", "srv p99", "req/s", "err"], rows
    )


def _recall_vs_exact_row(label: str, case: dict[str, Any]) -> list[Any]:
    r, fl = case["recall_vs_exact"], case["db_floor"]
    return [
        label,
        case["memories_per_user"]["p50"],
        r["recall@10"],
        r["min_recall@10"],
        r["results_not_owned_by_user"],
        fl["ms"]["p50"],
        fl["hnsw_probe_tenant_wide_ms"]["p50"],
        case["seed"]["seconds"],
        _mb(case["service_rss_bytes"]),
        _mb(case.get("postgres_pss_bytes")),
        r.get("missed_neighbours_nonpositive_sim"),
    ]


def _recall_vs_exact_table(cases: dict[str, Any]) -> str:
    rows = [_recall_vs_exact_row(label, case) for label, case in cases.items() if "recall_vs_exact" in case]
    return _table(
        [
            "case",
            "mem/user",
            "recall@10 %",
            "min %",
            "foreign",
            "db scan p50",
            "hnsw p50",
            "seed s",
            "service RSS MB",
            "pg PSS MB",
            "missed cos<=0",
        ],
        rows,
    )


def _latency_summary(lat: dict[str, Any]) -> list[str]:
    out = [
        "",
        "Search latency over HTTP on loopback (ms; cached query embeddings; top_k=10)",
        _search_latency_table(lat["cases"]),
        "",
        _recall_vs_exact_table(lat["cases"]),
    ]
    if lat.get("notes"):
        out += ["", *("note: " + n for n in lat["notes"])]
    return out


def _pipeline_row(case: dict[str, Any]) -> list[Any]:
    c1, c16 = case["c1"], case["c16"]
    return [
        f"{case['llm_latency_ms']:.0f} ms",
        c1["llm_calls_per_add"],
        c1["embedding_calls_per_add"],
        _f(c1.get("overhead_ms", {}).get("p50")),
        _f(c1.get("overhead_ms", {}).get("p95")),
        _f(c1["client_ms"]["p50"]),
        _f(c16["throughput_rps"]),
        _f(c16.get("overhead_ms", {}).get("p50")),
        c1["errors"] + c16["errors"],
    ]


def _pipeline_summary(pipe: dict[str, Any]) -> list[str]:
    rows = [_pipeline_row(case) for case in pipe.values() if isinstance(case, dict) and "c1" in case]
    return [
        "",
        "Add with infer=true against a fake LLM (generic provider on 127.0.0.1), one LLM call mode",
        _table(
            [
                "LLM latency",
                "LLM calls/add",
                "embed calls/add",
                "overhead p50",
                "overhead p95",
                "client p50",
                "adds/s c=16",
                "overhead p50 c=16",
                "errors",
            ],
            rows,
        ),
    ]


def _studio_summary(studio: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"Studio pages, one owner with {studio['memories']} memories (target {studio['target_ms']:.0f} ms):",
    ]
    for name, p in studio["pages"].items():
        lines.append(
            f"  {name:<28} p50 {p['p50_ms']:>7.1f} ms  p95 {p['p95_ms']:>7.1f} ms  max {p['max_ms']:>7.1f} ms"
        )
    lines.append(f"  every page's p95 under target: {studio['all_under_target_p95']}")
    return lines


def summary(results: dict[str, Any]) -> str:
    out: list[str] = []
    loc = results.get("locomo")
    if loc and "runs" in loc:
        out += _locomo_summary(loc)
    lat = results.get("latency")
    if lat and lat.get("cases"):
        out += _latency_summary(lat)
    pipe = results.get("pipeline")
    if pipe:
        out += _pipeline_summary(pipe)
    if results.get("studio"):
        out += _studio_summary(results["studio"])
    if results.get("ratios"):
        out += ["", "Ratios within this run: " + json.dumps(results["ratios"])]
    if results.get("error"):
        out += ["", f"ERROR: {results['error']}"]
    return "\n".join(out)
