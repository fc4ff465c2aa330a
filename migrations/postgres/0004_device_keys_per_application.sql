-- A public key is unique within its application only: a second application
-- must not learn that a key is enrolled elsewhere.
ALTER TABLE devices DROP CONSTRAINT devices_public_key_key;
CREATE UNIQUE INDEX devices_application_public_key ON devices (application_id, public_key);
