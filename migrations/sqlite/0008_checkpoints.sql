-- The tamper-evident record; see the PostgreSQL migration of the same number.
CREATE TABLE checkpoints (
    application_id  TEXT NOT NULL REFERENCES applications (id),
    seq             INTEGER NOT NULL,
    from_cursor     INTEGER NOT NULL,
    through_cursor  INTEGER NOT NULL,
    entries         BLOB NOT NULL,
    prev_hash       BLOB NOT NULL,
    hash            BLOB NOT NULL,
    key_id          TEXT NOT NULL,
    signature       BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (application_id, seq)
) STRICT;
