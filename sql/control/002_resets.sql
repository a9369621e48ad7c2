-- The audit trail of tenant resets. A reset empties the tenant's memory store, history
-- included, so the record that it happened cannot live there: it lives here, one row per
-- reset, written by the platform before the tenant's transaction commits. No foreign key to
-- control.tenants: the trail outlives the tenant it is about.
CREATE TABLE IF NOT EXISTS control.tenant_resets (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ref          text NOT NULL,
    actor        text NOT NULL,
    request_id   text,
    -- Rows removed per mem table: {"memories": 3, "memory_history": 5, ...}.
    removed      jsonb NOT NULL CHECK (jsonb_typeof(removed) = 'object'),
    reset_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS tenant_resets_ref ON control.tenant_resets (ref, reset_at);
