-- Standard Webhooks endpoints, one row each, per application. The row is
-- the durable position: `delivered_through` is the event position
-- delivered through (advanced only after a 2xx); `lease_owner` and
-- `lease_until` say which replica delivers to it now (another takes over when the lease ends);
-- `failures`, `failing_since` and `next_attempt_at` drive the back-off;
-- `paused_at`/`pause_reason` stop deliveries (by the operator or after a
-- day of failures). The secret is stored because the server signs with it
-- (a shared secret by design); `previous_secret` also signs until
-- `previous_until` after a rotation.
CREATE TABLE webhook_endpoints (
    id               UUID PRIMARY KEY,
    application_id   UUID NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    url              TEXT NOT NULL,
    secret           TEXT NOT NULL,
    previous_secret  TEXT,
    previous_until   TIMESTAMPTZ,
    delivered_through BIGINT NOT NULL,
    failures         BIGINT NOT NULL DEFAULT 0,
    failing_since    TIMESTAMPTZ,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    paused_at        TIMESTAMPTZ,
    pause_reason     TEXT,
    lease_owner      UUID,
    lease_until      TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX webhook_endpoints_application ON webhook_endpoints (application_id);
CREATE INDEX webhook_endpoints_due ON webhook_endpoints (next_attempt_at) WHERE paused_at IS NULL;

-- Each delivery attempt, the newest 100 per endpoint kept.
CREATE TABLE webhook_deliveries (
    id            BIGSERIAL PRIMARY KEY,
    endpoint_id   UUID NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    attempted_at  TIMESTAMPTZ NOT NULL,
    event_id      TEXT NOT NULL,
    status        BIGINT,
    error         TEXT,
    latency_ms    BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);
