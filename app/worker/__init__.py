"""The queue workers: run async adds (app/core/jobs) inside the service process.

At the layer of app.mcp: like a request, a job resolves its tenant, opens its transaction under
the enqueuer's scope (app.access) and calls the memory service; it is simply not started by HTTP.
"""
