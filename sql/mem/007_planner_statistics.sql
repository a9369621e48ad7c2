-- Planner statistics for fresh and fast-growing tenants.
--
-- A tenant database starts empty, and until autovacuum analyzes a table the planner plans
-- every search with empty-table statistics: measured on a LoCoMo-size owner (~600 memories)
-- right after the bulk add, the retrieval statement took ~21.6 ms instead of ~5.2 ms.
--
-- Two fixes, both narrow:
-- 1. Lower the analyze thresholds of the tables a search reads, so autovacuum re-analyzes a
--    small, growing tenant after tens of changed rows instead of 10 % of the table (the
--    default: 50 rows + 10 %). Autovacuum still visits each database only once a naptime.
-- 2. mem.refresh_statistics(): the add path calls it every few dozen adds (see
--    app.core.statistics); it analyzes only when mem.memories has never been analyzed or has
--    changed by more than 50 rows + 10 % since, and skips (SKIP_LOCKED) when autovacuum or
--    another request is analyzing already, so it never waits. SECURITY DEFINER so the app role
--    needs no MAINTAIN privilege (which would also allow LOCK TABLE, REINDEX, VACUUM).
ALTER TABLE mem.memories SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 50);
ALTER TABLE mem.entities SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 50);
ALTER TABLE mem.entity_links SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 50);
ALTER TABLE mem.relations SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 50);

CREATE OR REPLACE FUNCTION mem.refresh_statistics() RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    stale boolean;
BEGIN
    SELECT c.reltuples < 0 OR coalesce(s.n_mod_since_analyze, 0) > 50 + 0.1 * c.reltuples
      INTO stale
      FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
     WHERE c.oid = 'mem.memories'::regclass;
    IF NOT stale THEN
        RETURN false;
    END IF;
    ANALYZE (SKIP_LOCKED) mem.memories, mem.entities, mem.entity_links, mem.relations;
    RETURN true;
END;
$$;
REVOKE ALL ON FUNCTION mem.refresh_statistics() FROM PUBLIC;
