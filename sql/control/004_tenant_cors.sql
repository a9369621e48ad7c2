-- Per-tenant CORS allow-list: the browser origins (scheme://host[:port]) whose pages may call
-- the API with this tenant's keys. Empty = no browser origin (server-side callers are unaffected).
ALTER TABLE control.tenants ADD COLUMN IF NOT EXISTS cors_origins text[] NOT NULL DEFAULT '{}';
