-- The app role's complete privilege set on schema mem. Not a numbered migration: the runner
-- applies it, as the owner role, after the numbered files on every init, so it always
-- describes the newest schema. Revoke everything first, then grant the list: a table added
-- by a later migration is unreachable for request traffic until a line here grants it, and a
-- privilege granted by hand does not survive the next init. No UPDATE or DELETE on history.
REVOKE ALL ON ALL TABLES IN SCHEMA mem FROM {{app_role}};
REVOKE ALL ON ALL SEQUENCES IN SCHEMA mem FROM {{app_role}};
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA mem FROM {{app_role}};
GRANT USAGE ON SCHEMA mem TO {{app_role}};
GRANT SELECT, INSERT, UPDATE, DELETE ON mem.memories, mem.entities, mem.entity_links, mem.relations,
    mem.session_messages TO {{app_role}};
GRANT SELECT, INSERT ON mem.memory_history, mem.graph_history TO {{app_role}};
GRANT SELECT, UPDATE ON mem.config TO {{app_role}};
-- The async-add queue (005): enqueued, claimed and finished by the app role; deleted only by a
-- reset (app.memories.repo.reset_tenant), after mem.reset() has locked the memory tables.
GRANT SELECT, INSERT, UPDATE, DELETE ON mem.jobs TO {{app_role}};
GRANT SELECT ON mem.schema_migrations TO {{app_role}};
GRANT USAGE ON ALL SEQUENCES IN SCHEMA mem TO {{app_role}};
-- reset() is SECURITY DEFINER: the app role empties the store through it, never by TRUNCATE.
GRANT EXECUTE ON FUNCTION mem.reset() TO {{app_role}};
-- The row-level security policies (004) call these as the request role.
GRANT EXECUTE ON FUNCTION mem.claim_role(), mem.claim_user_id() TO {{app_role}};
-- refresh_statistics() (007) is SECURITY DEFINER: the add path analyzes a fast-growing tenant
-- through it without a MAINTAIN grant.
GRANT EXECUTE ON FUNCTION mem.refresh_statistics() TO {{app_role}};
