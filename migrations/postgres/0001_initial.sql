-- Assent schema, PostgreSQL. Up-only; every id is a server-generated UUID.
-- Secrets (API keys, enrollment codes, OTPs) are stored only as SHA-256 hashes.

CREATE TABLE applications (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE api_keys (
    id              UUID PRIMARY KEY,
    application_id  UUID NOT NULL REFERENCES applications (id),
    secret_hash     BYTEA NOT NULL CHECK (length(secret_hash) = 32),
    created_at      TIMESTAMPTZ NOT NULL,
    revoked_at      TIMESTAMPTZ
);
CREATE INDEX api_keys_application ON api_keys (application_id);

CREATE TABLE enrollments (
    id              UUID PRIMARY KEY,
    application_id  UUID NOT NULL REFERENCES applications (id),
    user_id         TEXT NOT NULL,
    secret_hash     BYTEA NOT NULL CHECK (length(secret_hash) = 32),
    created_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    consumed_at     TIMESTAMPTZ
);

CREATE TABLE devices (
    id              UUID PRIMARY KEY,
    application_id  UUID NOT NULL REFERENCES applications (id),
    user_id         TEXT NOT NULL,
    name            TEXT NOT NULL,
    public_key      BYTEA NOT NULL UNIQUE CHECK (length(public_key) = 32),
    created_at      TIMESTAMPTZ NOT NULL,
    last_seen_at    TIMESTAMPTZ,
    revoked_at      TIMESTAMPTZ
);
CREATE INDEX devices_application_user ON devices (application_id, user_id);

CREATE TABLE transactions (
    id                  UUID PRIMARY KEY,
    application_id      UUID NOT NULL REFERENCES applications (id),
    kind                TEXT NOT NULL CHECK (kind IN ('OTP')),
    state               TEXT NOT NULL CHECK (state IN ('PENDING', 'SCANNED', 'ACCEPTED', 'DENIED', 'EXPIRED', 'CANCELLED', 'FAILED')),
    user_id             TEXT,
    device_id           UUID REFERENCES devices (id),
    reason              TEXT,
    message             TEXT NOT NULL,
    context             JSONB NOT NULL,
    -- Cleared when the OTP is used, so a used OTP's hash does not outlive its purpose.
    otp_hash            BYTEA,
    -- The confirmation nonce the device must sign; set at scan.
    nonce               BYTEA,
    decision_signature  BYTEA,
    created_at          TIMESTAMPTZ NOT NULL,
    expires_at          TIMESTAMPTZ NOT NULL,
    completed_at        TIMESTAMPTZ
);
CREATE INDEX transactions_open_expiry ON transactions (expires_at) WHERE state IN ('PENDING', 'SCANNED');
CREATE INDEX transactions_device_open ON transactions (device_id) WHERE state = 'SCANNED';

CREATE TABLE events (
    cursor          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    application_id  UUID NOT NULL REFERENCES applications (id),
    type            TEXT NOT NULL,
    transaction_id  UUID,
    user_id         TEXT,
    device_id       UUID,
    reason          TEXT,
    occurred_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX events_application_cursor ON events (application_id, cursor);
CREATE INDEX events_occurred ON events (occurred_at);

-- Highest cursor removed by retention; a subscriber asking to resume before it has missed events.
CREATE TABLE event_retention (
    singleton       BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    purged_through  BIGINT NOT NULL
);
INSERT INTO event_retention (singleton, purged_through) VALUES (TRUE, 0);

-- Wrong OTPs per device, for the cooling-off rule (shared by all replicas).
CREATE TABLE otp_failures (
    device_id   UUID NOT NULL REFERENCES devices (id),
    failed_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX otp_failures_device ON otp_failures (device_id, failed_at);
