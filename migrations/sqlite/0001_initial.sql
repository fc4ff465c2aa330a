-- Assent schema, SQLite (the embedded, single-process engine). Same tables and
-- meaning as migrations/postgres; ids are UUID text, times are integer
-- microseconds since the Unix epoch (so comparisons are numeric), and the
-- context is JSON text. Secrets are stored only as SHA-256 hashes.

CREATE TABLE applications (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 400),
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    application_id  TEXT NOT NULL REFERENCES applications (id),
    secret_hash     BLOB NOT NULL CHECK (length(secret_hash) = 32),
    created_at      INTEGER NOT NULL,
    revoked_at      INTEGER
) STRICT;
CREATE INDEX api_keys_application ON api_keys (application_id);

CREATE TABLE enrollments (
    id              TEXT PRIMARY KEY,
    application_id  TEXT NOT NULL REFERENCES applications (id),
    user_id         TEXT NOT NULL,
    secret_hash     BLOB NOT NULL CHECK (length(secret_hash) = 32),
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    consumed_at     INTEGER
) STRICT;

CREATE TABLE devices (
    id              TEXT PRIMARY KEY,
    application_id  TEXT NOT NULL REFERENCES applications (id),
    user_id         TEXT NOT NULL,
    name            TEXT NOT NULL,
    public_key      BLOB NOT NULL UNIQUE CHECK (length(public_key) = 32),
    created_at      INTEGER NOT NULL,
    last_seen_at    INTEGER,
    revoked_at      INTEGER
) STRICT;
CREATE INDEX devices_application_user ON devices (application_id, user_id);

CREATE TABLE transactions (
    id                  TEXT PRIMARY KEY,
    application_id      TEXT NOT NULL REFERENCES applications (id),
    kind                TEXT NOT NULL CHECK (kind IN ('OTP')),
    state               TEXT NOT NULL CHECK (state IN ('PENDING', 'SCANNED', 'ACCEPTED', 'DENIED', 'EXPIRED', 'CANCELLED', 'FAILED')),
    user_id             TEXT,
    device_id           TEXT REFERENCES devices (id),
    reason              TEXT,
    message             TEXT NOT NULL,
    context             TEXT NOT NULL,
    otp_hash            BLOB,
    nonce               BLOB,
    decision_signature  BLOB,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    completed_at        INTEGER
) STRICT;
CREATE INDEX transactions_open_expiry ON transactions (expires_at) WHERE state IN ('PENDING', 'SCANNED');
CREATE INDEX transactions_device_open ON transactions (device_id) WHERE state = 'SCANNED';

CREATE TABLE events (
    cursor          INTEGER PRIMARY KEY AUTOINCREMENT,
    application_id  TEXT NOT NULL REFERENCES applications (id),
    type            TEXT NOT NULL,
    transaction_id  TEXT,
    user_id         TEXT,
    device_id       TEXT,
    reason          TEXT,
    occurred_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX events_application_cursor ON events (application_id, cursor);
CREATE INDEX events_occurred ON events (occurred_at);

CREATE TABLE event_retention (
    singleton       INTEGER PRIMARY KEY CHECK (singleton = 1),
    purged_through  INTEGER NOT NULL
) STRICT;
INSERT INTO event_retention (singleton, purged_through) VALUES (1, 0);

CREATE TABLE otp_failures (
    device_id   TEXT NOT NULL REFERENCES devices (id),
    failed_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX otp_failures_device ON otp_failures (device_id, failed_at);
