-- The control plane: the registry of tenants (Supabase "projects"). One row per tenant
-- says where its database lives, the JWT secret its keys are signed with, and the memory
-- settings fixed when its mem schema was created. Applied by the platform at start-up.
CREATE SCHEMA IF NOT EXISTS control;

CREATE TABLE IF NOT EXISTS control.schema_migrations (
    version     text PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS control.tenants (
    ref                  text PRIMARY KEY CHECK (ref ~ '^[a-z][a-z0-9]{2,39}$'),
    name                 text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- NULL = the platform's own server; a DSN without credentials otherwise.
    db_url               text,
    db_name              text NOT NULL UNIQUE,
    owner_role           text NOT NULL,
    app_role             text NOT NULL,
    app_role_password    text NOT NULL,
    jwt_secret           text NOT NULL,
    jwks_url             text,
    jwks                 jsonb,
    anon_key             text NOT NULL,
    service_role_key     text NOT NULL,
    status               text NOT NULL DEFAULT 'creating'
                         CHECK (status IN ('creating', 'active', 'failed', 'disabled')),
    embedding_dims       integer,
    fts_config           text,
    mem_schema_version   integer,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
