-- Async adds: a durable queue of jobs in the tenant's own database (issue 8). An accepted
-- `"async": true` add is one row here, committed before the answer (202) leaves; in-process
-- workers take rows with FOR UPDATE SKIP LOCKED and run the same add a sync request runs.
--
-- The row carries what the worker needs to act exactly as the request would have:
--   scope_role / scope_user_id / scope_session_id  the enqueuer's MemoryAuthScope, so a user's
--       add runs under that user's row-security claims (sql/mem/003), pinned to its JWT sub;
--   user_id / agent_id / run_id                   the owner the add writes for (already checked);
--   payload                                       the validated request body.
-- Exactly once: a worker claims a job by writing a fresh claim_token and a lease; the add's
-- writes and the job's SUCCEEDED status commit in one transaction whose UPDATE names that
-- token, so a worker whose lease was taken over (or that died) cannot commit its writes.
-- A RUNNING job whose lease_until has passed is taken again (its worker is presumed dead).
CREATE TABLE IF NOT EXISTS mem.jobs (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind             text NOT NULL DEFAULT 'add' CHECK (kind IN ('add')),
    scope_role       text NOT NULL CHECK (scope_role IN ('service_role', 'authenticated')),
    scope_user_id    text,
    scope_session_id text,
    user_id          text,
    agent_id         text,
    run_id           text,
    payload          jsonb NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    status           text NOT NULL DEFAULT 'PENDING'
                     CHECK (status IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED')),
    attempts         integer NOT NULL DEFAULT 0,
    next_run_at      timestamptz NOT NULL DEFAULT now(),
    claim_token      uuid,
    lease_until      timestamptz,
    error_code       text,
    error_message    text,
    -- The answer a sync add gives: {"results": [...], "skipped"?: [...], "notes"?: [...]}.
    result           jsonb,
    request_id       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    CONSTRAINT jobs_has_owner CHECK (user_id IS NOT NULL OR agent_id IS NOT NULL OR run_id IS NOT NULL),
    -- A user's job writes only that user's rows: the scope and the owner agree.
    CONSTRAINT jobs_user_scope CHECK (
        scope_role = 'service_role' OR (scope_user_id IS NOT NULL AND user_id = scope_user_id)),
    CONSTRAINT jobs_claimed CHECK (status <> 'RUNNING' OR (claim_token IS NOT NULL AND lease_until IS NOT NULL))
);

-- What the workers look for: due PENDING jobs, and RUNNING ones whose lease has run out.
CREATE INDEX IF NOT EXISTS jobs_pending ON mem.jobs (next_run_at) WHERE status = 'PENDING';
CREATE INDEX IF NOT EXISTS jobs_running ON mem.jobs (lease_until) WHERE status = 'RUNNING';
-- Owner-scoped listings, newest first.
CREATE INDEX IF NOT EXISTS jobs_user ON mem.jobs (user_id, created_at DESC);
CREATE INDEX IF NOT EXISTS jobs_created ON mem.jobs (created_at DESC);

-- The same policy as the other owner tables (003): service_role sees the tenant's jobs, a user
-- only its own, and a transaction without claims none.
ALTER TABLE mem.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE mem.jobs FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS owner_rows ON mem.jobs;
CREATE POLICY owner_rows ON mem.jobs
    USING ((SELECT mem.claim_role()) IS NOT NULL
           AND ((SELECT mem.claim_role()) <> 'authenticated'
                OR user_id = (SELECT mem.claim_user_id())))
    WITH CHECK ((SELECT mem.claim_role()) IS NOT NULL
                AND ((SELECT mem.claim_role()) <> 'authenticated'
                     OR user_id = (SELECT mem.claim_user_id())));
