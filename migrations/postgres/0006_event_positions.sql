-- Writes of one application no longer hold a lock across their commit.
-- An event's position is the id of the database transaction that appended
-- it (xid8, shifted left 20 bits) plus its ordinal within that transaction,
-- so positions order events by transaction. A reader takes only events of
-- transactions older than every transaction still running
-- (pg_snapshot_xmin), so no event with a smaller position can appear after
-- it has read on: no gap and no reordering, with any number of replicas.
-- Events written before this migration keep their cursor as position; every
-- later position is larger.
ALTER TABLE events ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE events ADD COLUMN position BIGINT;
UPDATE events SET position = cursor;
ALTER TABLE events ALTER COLUMN position SET NOT NULL;
CREATE INDEX events_application_position ON events (application_id, position);
DROP INDEX events_application_cursor;
