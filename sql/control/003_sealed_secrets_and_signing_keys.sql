-- Secrets at rest, and signing keys that rotate.
--
-- Tenant JWT secrets move to control.signing_keys, one row per key (kid), sealed with the
-- master key (AES-256-GCM; master_key_id names the key that sealed the row). A tenant has one
-- current key (retired_at IS NULL); rotated keys keep verifying until valid_until, and a
-- revoked key's row is deleted. keys_version changes with every rotation or revocation, so
-- replicas notice within seconds by reading that one number.
--
-- The role password is sealed into app_role_password_sealed. Rows written by older versions
-- still hold plain text here: the platform seals them at start-up (it needs the master key,
-- which SQL does not have) and then sets the plain columns to NULL. Minted API keys are not
-- stored at all any more: they are signed on demand from the current secret.
ALTER TABLE control.tenants
    ADD COLUMN IF NOT EXISTS app_role_password_sealed bytea,
    ADD COLUMN IF NOT EXISTS master_key_id text,
    ADD COLUMN IF NOT EXISTS jwt_issuer text,
    ADD COLUMN IF NOT EXISTS keys_version bigint NOT NULL DEFAULT 1;

ALTER TABLE control.tenants ALTER COLUMN app_role_password DROP NOT NULL;
ALTER TABLE control.tenants ALTER COLUMN jwt_secret DROP NOT NULL;
ALTER TABLE control.tenants DROP COLUMN IF EXISTS anon_key;
ALTER TABLE control.tenants DROP COLUMN IF EXISTS service_role_key;

CREATE TABLE IF NOT EXISTS control.signing_keys (
    ref            text NOT NULL REFERENCES control.tenants (ref) ON DELETE CASCADE,
    kid            text NOT NULL CHECK (kid ~ '^[A-Za-z0-9_-]{1,64}$'),
    secret_sealed  bytea NOT NULL,
    master_key_id  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    retired_at     timestamptz,
    valid_until    timestamptz,
    PRIMARY KEY (ref, kid)
);

-- At most one current key per tenant.
CREATE UNIQUE INDEX IF NOT EXISTS signing_keys_one_current
    ON control.signing_keys (ref) WHERE retired_at IS NULL;
