-- Events are read by position, as on PostgreSQL. One writer serialises
-- every write here, so the cursor itself is the position.
ALTER TABLE events ADD COLUMN position INTEGER GENERATED ALWAYS AS (cursor) VIRTUAL;
CREATE INDEX events_application_position ON events (application_id, position);
DROP INDEX events_application_cursor;
