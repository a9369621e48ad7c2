"""The project's benchmark harness: `python -m bench` (what `make bench` runs).

It starts the service as a real process on 127.0.0.1 (embedded PostgreSQL, local
embedder), then measures retrieval quality on LoCoMo (fused vs dense-only, the protocol
of the shared bench README) and search latency and recall at scale against a directly
seeded corpus, and writes everything to bench/results/<UTC timestamp>.json and
bench/results/latest.json.
"""
