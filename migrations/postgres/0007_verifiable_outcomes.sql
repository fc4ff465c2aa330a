-- Outcomes a relying party can verify (docs/relying-party.md).
-- A transaction keeps the relying party's opaque session binding and what
-- the device signed, as it signed it: its verdict, its reason and the
-- number it picked (a `wrong_number` denial was signed as an accept).
ALTER TABLE transactions ADD COLUMN binding BYTEA;
ALTER TABLE transactions ADD COLUMN decision TEXT;
ALTER TABLE transactions ADD COLUMN decision_reason TEXT;
ALTER TABLE transactions ADD COLUMN picked_number SMALLINT;
-- Every event of a transaction carries its binding (covered by the
-- server's signature).
ALTER TABLE events ADD COLUMN binding BYTEA;

-- The server's Ed25519 event-signing keys, shared by every replica of the
-- database. Exactly one is current (retired_at IS NULL); retired keys stay
-- published so that what they signed still verifies.
CREATE TABLE server_keys (
    id          TEXT PRIMARY KEY,
    public_key  BYTEA NOT NULL,
    secret_key  BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    retired_at  TIMESTAMPTZ
);
CREATE UNIQUE INDEX server_keys_one_current ON server_keys ((retired_at IS NULL))
    WHERE retired_at IS NULL;

-- A transaction's latest event, for GetTransaction and WaitTransaction.
CREATE INDEX events_transaction ON events (transaction_id, position);
