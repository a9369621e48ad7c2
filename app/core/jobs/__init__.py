"""Async adds on a durable queue in each tenant's database (sql/mem/005_jobs.sql).

Below the features so that any surface (/mem/v1, /mem0, MCP) can enqueue and read events;
the workers that run the jobs are app/worker.
"""
