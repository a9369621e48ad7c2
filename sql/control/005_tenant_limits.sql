-- Per-tenant limits (issue 9): a tenant's own request/add rates per key role and its cap on
-- requests in flight. Keys absent from the object fall back to the platform defaults (settings
-- `limits.*`); the admin API (PUT /auth/v1/admin/tenants/{ref}/limits) writes it.
ALTER TABLE control.tenants
    ADD COLUMN IF NOT EXISTS limits jsonb NOT NULL DEFAULT '{}'::jsonb
    CHECK (jsonb_typeof(limits) = 'object');
