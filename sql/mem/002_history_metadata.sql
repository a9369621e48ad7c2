-- History that records metadata changes. Before this file a metadata-only PUT wrote an UPDATE
-- row whose old and new text were equal and kept no trace of what changed. ADD rows carry the
-- new metadata, UPDATE rows both sides, DELETE rows the metadata the memory had. Nullable:
-- rows written before this migration have none. Adding a column fires no row trigger, so the
-- append-only trigger on this table is not in the way.
ALTER TABLE mem.memory_history ADD COLUMN IF NOT EXISTS old_metadata jsonb;
ALTER TABLE mem.memory_history ADD COLUMN IF NOT EXISTS new_metadata jsonb;
