-- Where application notices go: a row per replica that holds waiters or
-- event subscribers of an application, so the relay between replicas sends
-- an application's wake-ups and outcomes only there (device notices are
-- routed by `presence`). Removed when the replica stops listening, stops or
-- its lease ends.
CREATE TABLE listeners (
    application_id  UUID NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    replica         UUID NOT NULL,
    PRIMARY KEY (application_id, replica)
);
CREATE INDEX listeners_replica ON listeners (replica);
