-- Where application notices go: a row per replica that holds event
-- subscribers (`kind` 'events': the log's wake-ups) or outcome waiters
-- ('outcomes': transactions settling) of an application, so the relay
-- between replicas sends them only there (device notices are routed by
-- `presence`). Removed when the replica stops listening, stops or its lease
-- ends.
CREATE TABLE listeners (
    application_id  UUID NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    replica         UUID NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('events', 'outcomes')),
    PRIMARY KEY (application_id, kind, replica)
);
CREATE INDEX listeners_replica ON listeners (replica);
