"""Queue metrics on /metrics: depth by status (summed over tenants), latency, outcomes."""

from prometheus_client import Counter, Gauge, Histogram

QUEUE_DEPTH = Gauge(
    "memory_queue_jobs",
    "Async adds waiting or running, summed over the tenants this process scanned last",
    ["status"],
)
JOB_LATENCY = Histogram(
    "memory_queue_job_latency_seconds",
    "From enqueue to SUCCEEDED",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
JOB_RUN_SECONDS = Histogram(
    "memory_queue_job_attempt_seconds",
    "Duration of one attempt at a job, whatever its outcome",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
JOB_OUTCOMES = Counter(
    "memory_queue_job_attempts_total",
    "Attempts at jobs by outcome: succeeded, retried, failed, lost (another attempt holds the job), released",
    ["outcome"],
)
