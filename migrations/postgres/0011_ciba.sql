-- OpenID CIBA (docs/ciba.md): how each application, as a CIBA client, gets
-- its results; the backchannel requests (auth_req_id stored as a hash, so
-- every replica answers it and a stolen database does not yield one); the
-- ID-token signing keys, one per algorithm, shared by every replica.
CREATE TABLE ciba_clients (
    application_id         UUID PRIMARY KEY REFERENCES applications (id),
    delivery_mode          TEXT NOT NULL,
    notification_endpoint  TEXT,
    id_token_alg           TEXT NOT NULL,
    updated_at             TIMESTAMPTZ NOT NULL
);

CREATE TABLE ciba_requests (
    id_hash             BYTEA PRIMARY KEY,
    application_id      UUID NOT NULL REFERENCES applications (id),
    transaction_id      UUID NOT NULL,
    notification_token  TEXT,
    interval_seconds    BIGINT NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL,
    last_poll_at        TIMESTAMPTZ,
    redeemed_at         TIMESTAMPTZ,
    notified_at         TIMESTAMPTZ,
    notify_attempts     BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX ciba_requests_transaction ON ciba_requests (transaction_id);

CREATE TABLE oidc_keys (
    alg          TEXT PRIMARY KEY,
    kid          TEXT NOT NULL,
    private_der  BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL
);
