-- Immutable memories (mem0's `immutable: true` on add). An immutable memory is never changed
-- after it is written: the add pipeline does not UPDATE or DELETE it (the model may still see
-- it as context; such a decision is skipped and reported), and PUT /mem/v1/memories/{id}
-- answers 409 memory_immutable. A delete by id stays allowed: the user's right to erase.
-- A column, not a metadata key: metadata is the application's own (a PUT replaces it whole),
-- and the flag must not be something a metadata write can drop.
ALTER TABLE mem.memories ADD COLUMN IF NOT EXISTS immutable boolean NOT NULL DEFAULT false;
