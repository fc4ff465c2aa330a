-- Outcomes a relying party can verify (docs/relying-party.md); see the
-- PostgreSQL migration of the same number.
ALTER TABLE transactions ADD COLUMN binding BLOB;
ALTER TABLE transactions ADD COLUMN decision TEXT;
ALTER TABLE transactions ADD COLUMN decision_reason TEXT;
ALTER TABLE transactions ADD COLUMN picked_number INTEGER;
ALTER TABLE events ADD COLUMN binding BLOB;

CREATE TABLE server_keys (
    id          TEXT PRIMARY KEY,
    public_key  BLOB NOT NULL,
    secret_key  BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER
) STRICT;
CREATE UNIQUE INDEX server_keys_one_current ON server_keys ((retired_at IS NULL))
    WHERE retired_at IS NULL;

CREATE INDEX events_transaction ON events (transaction_id, cursor);
