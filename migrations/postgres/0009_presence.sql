-- Presence shared by every replica: a row per live device stream, owned by
-- the replica that holds it; a replica renews its lease every 10 s, and the
-- streams of a replica whose lease ran out (it died) stop counting.
CREATE TABLE replicas (
    id          UUID PRIMARY KEY,
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE TABLE presence (
    stream      UUID PRIMARY KEY,
    device_id   UUID NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    replica     UUID NOT NULL,
    opened_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX presence_device ON presence (device_id);
CREATE INDEX presence_replica ON presence (replica);
