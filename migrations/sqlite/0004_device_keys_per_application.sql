-- A public key is unique within its application only: a second application
-- must not learn that a key is enrolled elsewhere. SQLite cannot drop an
-- inline UNIQUE constraint, so the devices table is rebuilt; the foreign keys
-- that name it are checked when the migration commits.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE devices_v2 (
    id              TEXT PRIMARY KEY,
    application_id  TEXT NOT NULL REFERENCES applications (id),
    user_id         TEXT NOT NULL,
    name            TEXT NOT NULL,
    public_key      BLOB NOT NULL CHECK (length(public_key) = 32),
    created_at      INTEGER NOT NULL,
    last_seen_at    INTEGER,
    revoked_at      INTEGER
) STRICT;

INSERT INTO devices_v2 (id, application_id, user_id, name, public_key, created_at, last_seen_at,
    revoked_at)
SELECT id, application_id, user_id, name, public_key, created_at, last_seen_at, revoked_at
FROM devices;

DROP TABLE devices;
ALTER TABLE devices_v2 RENAME TO devices;

CREATE INDEX devices_application_user ON devices (application_id, user_id);
CREATE UNIQUE INDEX devices_application_public_key ON devices (application_id, public_key);
