-- One authority for a transaction's life: the domain decides every change,
-- the store applies it as a compare-and-set on this version.
ALTER TABLE transactions ADD COLUMN version INTEGER NOT NULL DEFAULT 1;

-- Fraud reports are read from the events the domain flagged, not re-derived
-- from states and reasons in SQL.
DROP INDEX transactions_fraud_reports;
CREATE INDEX events_fraud_reports ON events (application_id, user_id, occurred_at)
    WHERE fraud_reported = 1;
