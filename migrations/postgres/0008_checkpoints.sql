-- The tamper-evident record: each application's events are sealed, in
-- cursor order, into a hash chain of signed checkpoints (docs/security.md).
-- `entries` lists every sealed event as its 8-byte cursor and the SHA-256
-- of its signed bytes; `hash` covers the previous checkpoint's hash and the
-- entries, and the server key `key_id` signed it. Retention keeps these.
CREATE TABLE checkpoints (
    application_id  UUID NOT NULL REFERENCES applications (id),
    seq             BIGINT NOT NULL,
    from_cursor     BIGINT NOT NULL,
    through_cursor  BIGINT NOT NULL,
    entries         BYTEA NOT NULL,
    prev_hash       BYTEA NOT NULL,
    hash            BYTEA NOT NULL,
    key_id          TEXT NOT NULL,
    signature       BYTEA NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (application_id, seq)
);
