-- Graph memory: relations between an owner's entities, with the time they were true.
--
-- A relation is one edge `source --relation--> target` asserted by one memory (its
-- provenance). It has two clocks, as in Zep's Graphiti:
--   valid_from / valid_to        when it was true in the world (valid_to NULL: still true)
--   learned_at / invalidated_at  when we recorded it, and when we stopped believing it
-- Without a date from the model both clocks move together: an UPDATE or DELETE of the memory
-- that asserted a relation closes it (valid_to = invalidated_at = now()); the row is kept, so
-- `as_of` reads of the graph see Berlin before the move and Paris after it. Only an explicit
-- DELETE /mem/v1/relations/{id} removes rows (and writes history first).
--
-- origin says who asserted it: 'model' (the extract-and-decide answer), 'heuristic' (two
-- entities named in one fact, without a model: weighted `related_to`), 'manual'.
-- Entities gain `aliases`: when the model says "Bob" is "Robert Smith" the alias entity is
-- merged into the canonical one (links and relations move), its name kept as an alias, and
-- graph_history records the merge.

CREATE TABLE IF NOT EXISTS mem.relations (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           text,
    agent_id          text,
    run_id            text,
    source_entity_id  uuid NOT NULL REFERENCES mem.entities (id) ON DELETE CASCADE,
    relation          text NOT NULL CHECK (relation ~ '^[a-z][a-z0-9_]{0,47}$'),
    target_entity_id  uuid NOT NULL REFERENCES mem.entities (id) ON DELETE CASCADE,
    -- Memories are soft-deleted, so the provenance normally stays; SET NULL only if one is purged.
    memory_id         uuid REFERENCES mem.memories (id) ON DELETE SET NULL,
    origin            text NOT NULL DEFAULT 'model' CHECK (origin IN ('model', 'heuristic', 'manual')),
    weight            real NOT NULL DEFAULT 1 CHECK (weight > 0 AND weight <= 1),
    valid_from        timestamptz NOT NULL DEFAULT now(),
    valid_to          timestamptz,
    learned_at        timestamptz NOT NULL DEFAULT now(),
    invalidated_at    timestamptz,
    CONSTRAINT relations_has_owner CHECK (user_id IS NOT NULL OR agent_id IS NOT NULL OR run_id IS NOT NULL),
    CONSTRAINT relations_not_a_loop CHECK (source_entity_id <> target_entity_id),
    CONSTRAINT relations_valid_span CHECK (valid_to IS NULL OR valid_to >= valid_from)
);
-- One open assertion of an edge per memory.
CREATE UNIQUE INDEX IF NOT EXISTS relations_open_per_memory
    ON mem.relations (memory_id, source_entity_id, relation, target_entity_id) WHERE valid_to IS NULL;
-- Graph walks go both ways along an edge: the search's walk follows the heaviest open edges of
-- an entity (each direction read in weight order, stopping at its fan-out); the graph route's
-- walk and as_of reads use the plain ones.
CREATE INDEX IF NOT EXISTS relations_open_out
    ON mem.relations (source_entity_id, weight DESC) WHERE valid_to IS NULL;
CREATE INDEX IF NOT EXISTS relations_open_in
    ON mem.relations (target_entity_id, weight DESC) WHERE valid_to IS NULL;
CREATE INDEX IF NOT EXISTS relations_source ON mem.relations (source_entity_id, valid_from);
CREATE INDEX IF NOT EXISTS relations_target ON mem.relations (target_entity_id, valid_from);
CREATE INDEX IF NOT EXISTS relations_user ON mem.relations (user_id, valid_from DESC);
CREATE INDEX IF NOT EXISTS relations_memory ON mem.relations (memory_id);

ALTER TABLE mem.entities ADD COLUMN IF NOT EXISTS aliases text[] NOT NULL DEFAULT '{}';
CREATE INDEX IF NOT EXISTS entities_aliases ON mem.entities USING gin (aliases);

-- Relation changes and entity merges, append-only like memory_history.
CREATE TABLE IF NOT EXISTS mem.graph_history (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      text,
    agent_id     text,
    run_id       text,
    event        text NOT NULL CHECK (event IN ('RELATION_ADD', 'RELATION_CLOSE', 'RELATION_DELETE', 'ENTITY_MERGE')),
    relation_id  uuid,
    entity_id    uuid,
    memory_id    uuid,
    -- What the row was, in words (source, relation, target; alias and canonical names).
    detail       jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(detail) = 'object'),
    actor        text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS graph_history_relation ON mem.graph_history (relation_id, id);
CREATE INDEX IF NOT EXISTS graph_history_user ON mem.graph_history (user_id, id);

DROP TRIGGER IF EXISTS graph_history_append_only ON mem.graph_history;
CREATE TRIGGER graph_history_append_only
    BEFORE UPDATE OR DELETE ON mem.graph_history
    FOR EACH ROW EXECUTE FUNCTION mem.refuse_history_change();

-- Row-level security as in 003: the whole tenant for service_role, a user's own rows for a user.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['relations', 'graph_history'] LOOP
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

-- Reset empties the graph too, taking its locks in the writers' order (memories, entities,
-- links, relations, graph history, memory history at the flush, session messages), so a
-- reset beside adds waits instead of deadlocking. Same return type as 004: no DROP needed.
CREATE OR REPLACE FUNCTION mem.reset() RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    removed jsonb;
BEGIN
    LOCK TABLE mem.memories, mem.entities, mem.entity_links, mem.relations, mem.graph_history,
        mem.memory_history, mem.session_messages
        IN ACCESS EXCLUSIVE MODE;
    SELECT jsonb_build_object(
        'memories', (SELECT count(*) FROM mem.memories),
        'entities', (SELECT count(*) FROM mem.entities),
        'entity_links', (SELECT count(*) FROM mem.entity_links),
        'relations', (SELECT count(*) FROM mem.relations),
        'memory_history', (SELECT count(*) FROM mem.memory_history),
        'graph_history', (SELECT count(*) FROM mem.graph_history),
        'session_messages', (SELECT count(*) FROM mem.session_messages)
    ) INTO removed;
    TRUNCATE mem.memories, mem.entities, mem.entity_links, mem.relations, mem.memory_history,
        mem.graph_history, mem.session_messages;
    RETURN removed;
END;
$$;
REVOKE ALL ON FUNCTION mem.reset() FROM PUBLIC;
