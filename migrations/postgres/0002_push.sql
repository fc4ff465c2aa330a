-- Push logins, number matching and the fraud flag on events.

ALTER TABLE transactions DROP CONSTRAINT transactions_kind_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_kind_check CHECK (kind IN ('OTP', 'PUSH'));
-- The number shown on the login page under number matching.
ALTER TABLE transactions ADD COLUMN match_number SMALLINT CHECK (match_number BETWEEN 10 AND 99);
-- The three numbers offered to devices ("12,45,78"), empty without number matching.
ALTER TABLE transactions ADD COLUMN number_choices TEXT NOT NULL DEFAULT '';

-- At most one open push per user: the anti-fatigue rule, race-free.
CREATE UNIQUE INDEX transactions_one_open_push ON transactions (application_id, user_id)
    WHERE kind = 'PUSH' AND state = 'PENDING';
CREATE INDEX transactions_push_history ON transactions (application_id, user_id, created_at)
    WHERE kind = 'PUSH';
CREATE INDEX transactions_fraud_reports ON transactions (application_id, user_id, completed_at)
    WHERE state = 'DENIED' AND reason = 'not_me';

ALTER TABLE events ADD COLUMN fraud_reported BOOLEAN NOT NULL DEFAULT FALSE;
