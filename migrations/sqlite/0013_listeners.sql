-- Listeners; see the PostgreSQL migration of the same number (one process
-- on SQLite: kept for the shared store contract).
CREATE TABLE listeners (
    application_id  TEXT NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    replica         TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('events', 'outcomes')),
    PRIMARY KEY (application_id, kind, replica)
) STRICT;
CREATE INDEX listeners_replica ON listeners (replica);
