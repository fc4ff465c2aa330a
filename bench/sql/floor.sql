-- The physical floor of one OTP login on PostgreSQL: the least durable work
-- it needs on the project's own schema. Three single-row state changes —
-- insert the PENDING transaction, update it to SCANNED, update it to
-- ACCEPTED — each committed on its own together with its event row, as
-- `WITH t AS (INSERT/UPDATE … RETURNING …) INSERT INTO events … SELECT …
-- FROM t`. No lock, no reads, no wake-ups. `assent-bench flows` (its
-- default, `--ceiling floor`) runs it with `pgbench -n -M prepared` at 16
-- and 64 clients and reports the best as `floor_flows_per_s`.
-- It writes only transaction and event rows of its own: no device, API key
-- or application row is written, so the load's limits are not touched.
-- Variables (-D): app (application uuid), device (an enrolled device's
-- uuid), user (that device's user id).
\set n random(1, 9223372036854775806)

WITH t AS (INSERT INTO transactions (id, application_id, kind, state, user_id, message, context, otp_hash, created_at, expires_at, number_choices) VALUES (md5(:client_id::text || '.' || :n::text)::uuid, :app::uuid, 'OTP', 'PENDING', :user::text, 'Log in to the assent-bench floor?', '{"bench":"floor"}'::jsonb, sha256('otp-secret'::bytea), now(), now() + interval '120 seconds', '') RETURNING id, application_id, user_id) INSERT INTO events (application_id, type, transaction_id, user_id, occurred_at, position) SELECT application_id, 'transaction.created', id, user_id, now(), pg_current_xact_id()::text::bigint << 20 FROM t;
WITH t AS (UPDATE transactions SET state = 'SCANNED', device_id = :device::uuid, nonce = sha256('nonce'::bytea), otp_hash = NULL, version = 2 WHERE id = md5(:client_id::text || '.' || :n::text)::uuid RETURNING id, application_id, user_id, device_id) INSERT INTO events (application_id, type, transaction_id, user_id, device_id, occurred_at, position) SELECT application_id, 'transaction.scanned', id, user_id, device_id, now(), pg_current_xact_id()::text::bigint << 20 FROM t;
WITH t AS (UPDATE transactions SET state = 'ACCEPTED', decision_signature = sha512('signature'::bytea), completed_at = now(), version = 3 WHERE id = md5(:client_id::text || '.' || :n::text)::uuid RETURNING id, application_id, user_id, device_id) INSERT INTO events (application_id, type, transaction_id, user_id, device_id, occurred_at, position) SELECT application_id, 'transaction.accepted', id, user_id, device_id, now(), pg_current_xact_id()::text::bigint << 20 FROM t;
