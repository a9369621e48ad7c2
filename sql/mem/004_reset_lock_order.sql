-- Reset takes its locks in the order writers do, and says what it removed.
-- Before this file mem.reset() was a bare TRUNCATE, which locks its tables in the order
-- listed (history before memories) while an add writes memories, then entities, links,
-- history and session messages: a reset running beside adds deadlocked. Now one LOCK TABLE
-- takes every table in the writers' order, so a reset waits behind a running add instead
-- of holding a table the add still needs. The counts are read under that lock, so they are
-- exactly the rows the TRUNCATE removes; the caller records them in the control plane.
-- The return type changes (void -> jsonb), hence DROP and CREATE; grants.sql grants it again.
DROP FUNCTION IF EXISTS mem.reset();
CREATE FUNCTION mem.reset() RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    removed jsonb;
BEGIN
    LOCK TABLE mem.memories, mem.entities, mem.entity_links, mem.memory_history, mem.session_messages
        IN ACCESS EXCLUSIVE MODE;
    SELECT jsonb_build_object(
        'memories', (SELECT count(*) FROM mem.memories),
        'entities', (SELECT count(*) FROM mem.entities),
        'entity_links', (SELECT count(*) FROM mem.entity_links),
        'memory_history', (SELECT count(*) FROM mem.memory_history),
        'session_messages', (SELECT count(*) FROM mem.session_messages)
    ) INTO removed;
    TRUNCATE mem.memories, mem.entities, mem.entity_links, mem.memory_history, mem.session_messages;
    RETURN removed;
END;
$$;
REVOKE ALL ON FUNCTION mem.reset() FROM PUBLIC;
