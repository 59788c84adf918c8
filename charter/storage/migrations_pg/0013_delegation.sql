-- Sub-agents (issue 21, AUDIT-FORMAT §12): an agent made by another agent's delegation names
-- its parent (by name), the parent's charter hash its delegation charter was made under, and
-- its depth (0: chartered by the owner). The delegation charter itself is in `charters`, under
-- the agent's charter_hash. The gate walks `parent` up in one recursive query.
-- (PostgreSQL: INTEGER is BIGINT here, as SQLite integers are 64-bit.)
ALTER TABLE agents ADD COLUMN parent TEXT;
ALTER TABLE agents ADD COLUMN parent_charter TEXT;
ALTER TABLE agents ADD COLUMN depth BIGINT NOT NULL DEFAULT 0;
CREATE INDEX agents_parent ON agents(parent);
