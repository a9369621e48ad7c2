-- Row-level security: the third isolation layer, after the database per tenant and the
-- owner filter every repository query writes. Each request transaction states who it runs
-- as with two transaction-local settings (set_config(..., true) == SET LOCAL), the way
-- Supabase hands PostgREST's request.jwt.claims to its policies:
--   mem.role     'service_role' (every row of this tenant) or 'authenticated'
--   mem.user_id  the signed-in user's sub (authenticated only)
-- A transaction that sets neither sees and writes no owned row: the policies fail closed.
-- FORCE makes the table owner subject too, so only a superuser (bench seeding, tests that
-- inspect) and the foreign-key machinery bypass them. The migration runner sets the
-- tenant-wide claim itself; mem.reset() needs none because TRUNCATE is not row-checked.
--
-- The settings are read through (SELECT mem.claim_*()) sub-selects: the planner turns each
-- into an InitPlan evaluated once per statement, not once per row, and an InitPlan value can
-- still be an index condition, so `user_id = <claim>` keeps the owner indexes usable.
-- The role tests are written as IS NOT NULL and <> 'authenticated', not = 'service_role':
-- the planner cannot know the claims and guesses 99.5 % for those forms but 0.5 % for an
-- equality. With the equality every row estimate under a policy shrank ~30-fold and the
-- hybrid search picked nested loops over its CTEs (measured: twice as slow at 2,000 rows).
-- These policies guard against a query that forgets its owner filter, not against someone
-- holding the app role's password: that role may set the settings too.

-- 'service_role', 'authenticated', or NULL for anything else (unset, empty, unknown).
CREATE OR REPLACE FUNCTION mem.claim_role() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE current_setting('mem.role', true)
               WHEN 'service_role' THEN 'service_role'
               WHEN 'authenticated' THEN 'authenticated'
           END
$$;

-- The user a policy lets through: NULL unless the role is 'authenticated' with a non-empty
-- sub, so a service_role claim with a stray user id (or an empty setting left over from an
-- earlier transaction on the pooled connection) never matches a row by accident.
CREATE OR REPLACE FUNCTION mem.claim_user_id() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN current_setting('mem.role', true) = 'authenticated'
                THEN nullif(current_setting('mem.user_id', true), '') END
$$;

-- Owner tables: the whole tenant for service_role, the user's own rows for a user. The same
-- expression checks written rows (WITH CHECK), so a user cannot insert or move a row to
-- another user.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['memories', 'memory_history', 'entities', 'session_messages'] LOOP
        EXECUTE format('ALTER TABLE mem.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE mem.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('DROP POLICY IF EXISTS owner_rows ON mem.%I', t);
        EXECUTE format(
            $p$CREATE POLICY owner_rows ON mem.%I
                   USING ((SELECT mem.claim_role()) IS NOT NULL
                          AND ((SELECT mem.claim_role()) <> 'authenticated'
                               OR user_id = (SELECT mem.claim_user_id())))
                   WITH CHECK ((SELECT mem.claim_role()) IS NOT NULL
                               AND ((SELECT mem.claim_role()) <> 'authenticated'
                                    OR user_id = (SELECT mem.claim_user_id())))$p$,
            t);
    END LOOP;
END;
$$;

-- Links carry no owner: a link is visible, and may be written, when both its memory and its
-- entity are. The sub-selects read those tables under their own policies.
ALTER TABLE mem.entity_links ENABLE ROW LEVEL SECURITY;
ALTER TABLE mem.entity_links FORCE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS owner_rows ON mem.entity_links;
CREATE POLICY owner_rows ON mem.entity_links
    USING ((SELECT mem.claim_role()) IS NOT NULL
           AND ((SELECT mem.claim_role()) <> 'authenticated'
                OR (EXISTS (SELECT 1 FROM mem.memories m WHERE m.id = memory_id)
                    AND EXISTS (SELECT 1 FROM mem.entities e WHERE e.id = entity_id))))
    WITH CHECK ((SELECT mem.claim_role()) IS NOT NULL
                AND ((SELECT mem.claim_role()) <> 'authenticated'
                     OR (EXISTS (SELECT 1 FROM mem.memories m WHERE m.id = memory_id)
                         AND EXISTS (SELECT 1 FROM mem.entities e WHERE e.id = entity_id))));
