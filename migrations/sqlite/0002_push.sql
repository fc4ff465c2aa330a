-- Push logins, number matching and the fraud flag on events. SQLite cannot
-- change a CHECK constraint in place, so the transactions table is rebuilt.

CREATE TABLE transactions_v2 (
    id                  TEXT PRIMARY KEY,
    application_id      TEXT NOT NULL REFERENCES applications (id),
    kind                TEXT NOT NULL CHECK (kind IN ('OTP', 'PUSH')),
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
    completed_at        INTEGER,
    match_number        INTEGER CHECK (match_number BETWEEN 10 AND 99),
    number_choices      TEXT NOT NULL DEFAULT ''
) STRICT;

INSERT INTO transactions_v2 (id, application_id, kind, state, user_id, device_id, reason, message,
    context, otp_hash, nonce, decision_signature, created_at, expires_at, completed_at)
SELECT id, application_id, kind, state, user_id, device_id, reason, message,
    context, otp_hash, nonce, decision_signature, created_at, expires_at, completed_at
FROM transactions;

DROP TABLE transactions;
ALTER TABLE transactions_v2 RENAME TO transactions;

CREATE INDEX transactions_open_expiry ON transactions (expires_at) WHERE state IN ('PENDING', 'SCANNED');
CREATE INDEX transactions_device_open ON transactions (device_id) WHERE state = 'SCANNED';
CREATE UNIQUE INDEX transactions_one_open_push ON transactions (application_id, user_id)
    WHERE kind = 'PUSH' AND state = 'PENDING';
CREATE INDEX transactions_push_history ON transactions (application_id, user_id, created_at)
    WHERE kind = 'PUSH';
CREATE INDEX transactions_fraud_reports ON transactions (application_id, user_id, completed_at)
    WHERE state = 'DENIED' AND reason = 'not_me';

ALTER TABLE events ADD COLUMN fraud_reported INTEGER NOT NULL DEFAULT 0;
