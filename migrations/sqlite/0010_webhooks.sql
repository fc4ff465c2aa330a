-- Standard Webhooks endpoints and their delivery log; see the PostgreSQL
-- migration of the same number.
CREATE TABLE webhook_endpoints (
    id               TEXT PRIMARY KEY,
    application_id   TEXT NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    url              TEXT NOT NULL,
    secret           TEXT NOT NULL,
    previous_secret  TEXT,
    previous_until   INTEGER,
    delivered_through INTEGER NOT NULL,
    failures         INTEGER NOT NULL DEFAULT 0,
    failing_since    INTEGER,
    next_attempt_at  INTEGER NOT NULL,
    paused_at        INTEGER,
    pause_reason     TEXT,
    lease_owner      TEXT,
    lease_until      INTEGER,
    created_at       INTEGER NOT NULL
) STRICT;
CREATE INDEX webhook_endpoints_application ON webhook_endpoints (application_id);
CREATE INDEX webhook_endpoints_due ON webhook_endpoints (next_attempt_at) WHERE paused_at IS NULL;

CREATE TABLE webhook_deliveries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id   TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    attempted_at  INTEGER NOT NULL,
    event_id      TEXT NOT NULL,
    status        INTEGER,
    error         TEXT,
    latency_ms    INTEGER NOT NULL
) STRICT;
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);
