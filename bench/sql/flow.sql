-- The database work of one OTP flow, exactly as assent-server issues it
-- (server/src/store/postgres/queries.rs, server/src/store/sql.rs,
-- server/src/notify/postgres.rs), for `pgbench -n -M prepared -f flow.sql`.
-- `assent-bench flows --ceiling server` runs it right before the load at the
-- load's concurrency and reports its tps as `ceiling_flows_per_s`. One
-- pgbench transaction = one flow:
--   * the three writes, one autocommitted statement per server-side step
--     (`WITH t AS (INSERT/UPDATE … RETURNING id) INSERT INTO events …`),
--     the decision's with the device row locked FOR SHARE, no lock beyond;
--   * the scan's strike reserved (without waiting for the disk) in the same
--     statement that reads the transaction, and given back inside the
--     scan's own statement; the decision is decided on the copy the
--     device's session sent, without a read (API keys are cached for
--     0.5 s: no lookup);
--   * after each write, the cross-replica wake-up `SELECT pg_notify(…)` on
--     channel assent_bench_ceiling, so the server under test is not woken.
-- Left out: the relying party's event reads, and all non-database work. So
-- this is a DB-only upper bound of the request path as the server does it.
-- Variables (-D): app, lock (unused), key (unused), device, user.
\set n random(1, 9223372036854775806)

-- 1. CreateOtpAuthentication.
WITH t AS (INSERT INTO transactions (id, application_id, kind, state, user_id, device_id, reason, message, context, otp_hash, nonce, decision_signature, match_number, number_choices, created_at, expires_at, completed_at, version) VALUES (md5(:client_id::text || '.' || :n::text)::uuid, :app::uuid, 'OTP', 'PENDING', NULL, NULL, NULL, 'Log in to the assent-bench ceiling?', '{"bench":"flows"}'::jsonb, sha256('otp-secret'::bytea), NULL, NULL, NULL, '', now(), now() + interval '120 seconds', NULL, 1) RETURNING id) INSERT INTO events (application_id, type, transaction_id, user_id, device_id, reason, fraud_reported, occurred_at, position) SELECT :app::uuid, 'transaction.created', id, NULL, NULL, NULL, false, now(), ((pg_current_xact_id()::text::bigint << 20) + set_config('assent.event_ordinal', (COALESCE(NULLIF(current_setting('assent.event_ordinal', true), ''), '0')::int + 1)::text, true)::bigint) FROM t;
SELECT pg_notify('assent_bench_ceiling', '{"origin":"00000000-0000-4000-8000-000000000000","items":[{"kind":"events_appended","application_id":"' || :app::text || '"}]}');

-- 2. SubmitOtp: strike reserved and transaction read in one statement, scan, strike back, wake-up.
WITH c AS (SELECT set_config('synchronous_commit', 'off', true)), r AS (UPDATE devices SET otp_strikes = CASE WHEN otp_window_start IS NULL OR otp_window_start <= now() - interval '5 minutes' THEN 1 ELSE otp_strikes + 1 END, otp_window_start = CASE WHEN otp_window_start IS NULL OR otp_window_start <= now() - interval '5 minutes' THEN now() ELSE otp_window_start END WHERE id = :device::uuid AND (otp_window_start IS NULL OR otp_window_start <= now() - interval '5 minutes' OR otp_strikes < 1000000) AND EXISTS (SELECT 1 FROM c) RETURNING 1) SELECT EXISTS (SELECT 1 FROM r) AS allowed, id, application_id, kind, state, user_id, device_id, reason, message, context, otp_hash, nonce, decision_signature, match_number, number_choices, created_at, expires_at, completed_at, version FROM (SELECT 1) AS one LEFT JOIN transactions ON id = md5(:client_id::text || '.' || :n::text)::uuid AND application_id = :app::uuid;
WITH d AS (SELECT id FROM devices WHERE id = :device::uuid AND application_id = :app::uuid AND revoked_at IS NULL FOR SHARE), t AS (UPDATE transactions SET state = 'SCANNED', user_id = :user::text, device_id = :device::uuid, reason = NULL, otp_hash = NULL, nonce = sha256('nonce'::bytea), decision_signature = NULL, completed_at = NULL, version = 2 WHERE id = md5(:client_id::text || '.' || :n::text)::uuid AND application_id = :app::uuid AND version = 1 AND EXISTS (SELECT 1 FROM d) AND expires_at > now() RETURNING id), s AS (UPDATE devices SET otp_strikes = otp_strikes - 1 WHERE id = :device::uuid AND otp_strikes > 0 AND EXISTS (SELECT 1 FROM t)) INSERT INTO events (application_id, type, transaction_id, user_id, device_id, reason, fraud_reported, occurred_at, position) SELECT :app::uuid, 'transaction.scanned', id, :user::text, :device::uuid, NULL, false, now(), ((pg_current_xact_id()::text::bigint << 20) + set_config('assent.event_ordinal', (COALESCE(NULLIF(current_setting('assent.event_ordinal', true), ''), '0')::int + 1)::text, true)::bigint) FROM t;
SELECT pg_notify('assent_bench_ceiling', '{"origin":"00000000-0000-4000-8000-000000000000","items":[{"kind":"events_appended","application_id":"' || :app::text || '"}]}');

-- 3. SignedDecision (decided on the copy the session sent: no read), accept, wake-up.
WITH d AS (SELECT id FROM devices WHERE id = :device::uuid AND application_id = :app::uuid AND revoked_at IS NULL FOR SHARE), t AS (UPDATE transactions SET state = 'ACCEPTED', user_id = :user::text, device_id = :device::uuid, reason = NULL, otp_hash = NULL, nonce = sha256('nonce'::bytea), decision_signature = sha512('signature'::bytea), completed_at = now(), version = 3 WHERE id = md5(:client_id::text || '.' || :n::text)::uuid AND application_id = :app::uuid AND version = 2 AND EXISTS (SELECT 1 FROM d) AND expires_at > now() RETURNING id) INSERT INTO events (application_id, type, transaction_id, user_id, device_id, reason, fraud_reported, occurred_at, position) SELECT :app::uuid, 'transaction.accepted', id, :user::text, :device::uuid, NULL, false, now(), ((pg_current_xact_id()::text::bigint << 20) + set_config('assent.event_ordinal', (COALESCE(NULLIF(current_setting('assent.event_ordinal', true), ''), '0')::int + 1)::text, true)::bigint) FROM t;
SELECT pg_notify('assent_bench_ceiling', '{"origin":"00000000-0000-4000-8000-000000000000","items":[{"kind":"events_appended","application_id":"' || :app::text || '"}]}');
