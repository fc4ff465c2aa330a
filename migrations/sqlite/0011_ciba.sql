-- OpenID CIBA; see the PostgreSQL migration of the same number.
CREATE TABLE ciba_clients (
    application_id         TEXT PRIMARY KEY REFERENCES applications (id),
    delivery_mode          TEXT NOT NULL,
    notification_endpoint  TEXT,
    id_token_alg           TEXT NOT NULL,
    updated_at             INTEGER NOT NULL
) STRICT;

CREATE TABLE ciba_requests (
    id_hash             BLOB PRIMARY KEY,
    application_id      TEXT NOT NULL REFERENCES applications (id),
    transaction_id      TEXT NOT NULL,
    notification_token  TEXT,
    interval_seconds    INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    last_poll_at        INTEGER,
    redeemed_at         INTEGER,
    notified_at         INTEGER,
    notify_attempts     INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX ciba_requests_transaction ON ciba_requests (transaction_id);

CREATE TABLE oidc_keys (
    alg          TEXT PRIMARY KEY,
    kid          TEXT NOT NULL,
    private_der  BLOB NOT NULL,
    created_at   INTEGER NOT NULL
) STRICT;
