-- Presence; see the PostgreSQL migration of the same number.
CREATE TABLE replicas (
    id          TEXT PRIMARY KEY,
    expires_at  INTEGER NOT NULL
) STRICT;
CREATE TABLE presence (
    stream      TEXT PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    replica     TEXT NOT NULL,
    opened_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX presence_device ON presence (device_id);
CREATE INDEX presence_replica ON presence (replica);
