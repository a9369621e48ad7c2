-- The per-tenant memory store (schema mem), version 1. Applied once per tenant database by
-- the mem migration runner (app/tenancy/migrations.py), as the tenant's owner role. Written
-- idempotently all the same: tenants created before the runner existed ran it on every init.
-- Request traffic uses the app role, which owns nothing here; its grants live in grants.sql,
-- re-applied after every migration run, so row-level security can later become a third
-- isolation layer. {{dims}} and {{fts_config}} are fixed at init and substituted after validation.
CREATE SCHEMA IF NOT EXISTS mem;

CREATE TABLE IF NOT EXISTS mem.schema_migrations (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS mem.memories (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      text,
    agent_id     text,
    run_id       text,
    memory       text NOT NULL,
    embedding    public.vector({{dims}}) NOT NULL,
    hash         text NOT NULL,
    memory_type  text NOT NULL DEFAULT 'LONG_TERM'
                 CHECK (memory_type IN ('LONG_TERM', 'SHORT_TERM', 'EPISODIC', 'SEMANTIC', 'PROCEDURAL')),
    metadata     jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    actor_id     text,
    role         text,
    expires_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    fts          tsvector GENERATED ALWAYS AS (to_tsvector('{{fts_config}}'::regconfig, memory)) STORED,
    CONSTRAINT memories_has_owner CHECK (user_id IS NOT NULL OR agent_id IS NOT NULL OR run_id IS NOT NULL)
);

-- Cosine everywhere: the operator class and the query operator (<=>) must agree.
CREATE INDEX IF NOT EXISTS memories_embedding_hnsw
    ON mem.memories USING hnsw (embedding public.vector_cosine_ops);
CREATE INDEX IF NOT EXISTS memories_fts_gin ON mem.memories USING gin (fts);
CREATE INDEX IF NOT EXISTS memories_user_live
    ON mem.memories (user_id, created_at DESC) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS memories_agent_live
    ON mem.memories (agent_id, created_at DESC) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS memories_run_live
    ON mem.memories (run_id, created_at DESC) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS memories_owner_hash ON mem.memories (user_id, hash) WHERE deleted_at IS NULL;

CREATE TABLE IF NOT EXISTS mem.memory_history (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    memory_id    uuid NOT NULL,
    -- The owner is copied here so history reads name their owner without a join.
    user_id      text,
    agent_id     text,
    run_id       text,
    event        text NOT NULL CHECK (event IN ('ADD', 'UPDATE', 'DELETE')),
    old_memory   text,
    new_memory   text,
    actor        text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS memory_history_memory ON mem.memory_history (memory_id, id);
CREATE INDEX IF NOT EXISTS memory_history_recent ON mem.memory_history (created_at);

-- Append-only, enforced by the database: even a role with UPDATE or DELETE (the owner)
-- is refused. TRUNCATE (used only by mem.reset()) fires no row trigger.
CREATE OR REPLACE FUNCTION mem.refuse_history_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'mem.memory_history is append-only'
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
DROP TRIGGER IF EXISTS memory_history_append_only ON mem.memory_history;
CREATE TRIGGER memory_history_append_only
    BEFORE UPDATE OR DELETE ON mem.memory_history
    FOR EACH ROW EXECUTE FUNCTION mem.refuse_history_change();

CREATE TABLE IF NOT EXISTS mem.entities (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      text,
    agent_id     text,
    run_id       text,
    text         text NOT NULL CHECK (length(text) BETWEEN 1 AND 200),
    entity_type  text NOT NULL DEFAULT 'other'
                 CHECK (entity_type IN ('person', 'place', 'organization', 'product', 'event', 'date', 'other')),
    embedding    public.vector({{dims}}),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT entities_has_owner CHECK (user_id IS NOT NULL OR agent_id IS NOT NULL OR run_id IS NOT NULL)
);
CREATE UNIQUE INDEX IF NOT EXISTS entities_unique_per_owner ON mem.entities (
    lower(text), entity_type, coalesce(user_id, ''), coalesce(agent_id, ''), coalesce(run_id, '')
);
CREATE INDEX IF NOT EXISTS entities_user ON mem.entities (user_id, lower(text));

CREATE TABLE IF NOT EXISTS mem.entity_links (
    entity_id    uuid NOT NULL REFERENCES mem.entities (id) ON DELETE CASCADE,
    memory_id    uuid NOT NULL REFERENCES mem.memories (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity_id, memory_id)
);
CREATE INDEX IF NOT EXISTS entity_links_memory ON mem.entity_links (memory_id);

CREATE TABLE IF NOT EXISTS mem.session_messages (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      text,
    agent_id     text,
    run_id       text,
    role         text NOT NULL,
    name         text,
    content      text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS session_messages_scope
    ON mem.session_messages (user_id, agent_id, run_id, id DESC);

CREATE TABLE IF NOT EXISTS mem.config (
    id              boolean PRIMARY KEY DEFAULT true CHECK (id),
    embedding_dims  integer NOT NULL,
    fts_config      text NOT NULL,
    settings        jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(settings) = 'object'),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
INSERT INTO mem.config (embedding_dims, fts_config) VALUES ({{dims}}, '{{fts_config}}')
ON CONFLICT (id) DO NOTHING;

-- Reset is the one way history is emptied. SECURITY DEFINER runs it as the owner, so
-- the app role needs no TRUNCATE grant; search_path is pinned against hijacking.
CREATE OR REPLACE FUNCTION mem.reset() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    TRUNCATE mem.entity_links, mem.entities, mem.memory_history, mem.memories, mem.session_messages;
END;
$$;
REVOKE ALL ON FUNCTION mem.reset() FROM PUBLIC;
