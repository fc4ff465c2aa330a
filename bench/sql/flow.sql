-- The database work of one OTP flow, exactly as assent-server issues it
-- (server/src/store/postgres/*.rs, server/src/notify/postgres.rs), for
-- `pgbench -n -M prepared -f flow.sql`. `assent-bench flows` runs it right
-- before the load at the load's concurrency and reports its tps as
-- `ceiling_flows_per_s`. One pgbench transaction = one flow:
--   * the three writes, one autocommitted statement per server-side step,
--     each `WITH l AS (SELECT pg_advisory_xact_lock(app key)), t AS
--     (INSERT/UPDATE … WHERE EXISTS (SELECT 1 FROM l) RETURNING *), e AS
--     (INSERT INTO events …) SELECT … FROM t` (insert_transaction,
--     scan_transaction, transition to ACCEPTED);
--   * after each, the cross-replica wake-up `SELECT pg_notify(…)` (one per
--     write as at low load; under load the server batches several in one),
--     on channel assent_bench_ceiling instead of assent_fanout so that the
--     server under test, which LISTENs there, is not woken by the ceiling;
--   * the reads of the request path: the API key lookup of
--     CreateOtpAuthentication, the OTP-failure count and find_transaction of
--     SubmitOtp, find_transaction of the decision.
-- Left out: the relying party's event reads (Subscribe's events_after, one
-- per wake-up, batched), sqlx's ping before each pool acquire, and all
-- non-database work (gRPC, Ed25519, Rust). So this is a DB-only upper bound
-- of the request path.
-- Variables (-D): app (application uuid), lock (its advisory lock key: the
-- uuid's first 8 bytes as a big-endian i64), key (API key id), device (an
-- enrolled device's uuid), user (that device's user id).
\set n random(1, 9223372036854775806)

-- 1. CreateOtpAuthentication: authenticate the API key, insert_transaction, wake-up.
SELECT k.secret_hash, a.id, a.name, a.created_at FROM api_keys k JOIN applications a ON a.id = k.application_id WHERE k.id = :key::uuid AND k.revoked_at IS NULL;
WITH l AS (SELECT pg_advisory_xact_lock(:lock::bigint)), t AS ( INSERT INTO transactions (id, application_id, kind, state, user_id, message, context, otp_hash, created_at, expires_at, nonce, match_number, number_choices) SELECT md5(:client_id::text || '.' || :n::text)::uuid, :app::uuid, 'OTP', 'PENDING', :user::text, 'Log in to the assent-bench ceiling?', '{"bench":"flows"}'::jsonb, sha256('otp-secret'::bytea), now(), now() + interval '120 seconds', NULL::bytea, NULL::smallint, '' WHERE EXISTS (SELECT 1 FROM l) RETURNING * ), e AS ( INSERT INTO events (application_id, type, transaction_id, user_id, occurred_at) SELECT application_id, 'transaction.created', id, user_id, created_at FROM t ) SELECT id, application_id, kind, state, user_id, device_id, reason, message, context, otp_hash, nonce, decision_signature, created_at, expires_at, completed_at, match_number, number_choices FROM t;
SELECT pg_notify('assent_bench_ceiling', '{"origin":"00000000-0000-4000-8000-000000000000","items":[{"kind":"events","app":"' || :app::text || '"}]}');

-- 2. SubmitOtp: cooling-off count, find_transaction, scan_transaction, wake-up.
SELECT count(*) FROM otp_failures WHERE device_id = :device::uuid AND failed_at > now() - interval '5 minutes';
SELECT id, application_id, kind, state, user_id, device_id, reason, message, context, otp_hash, nonce, decision_signature, created_at, expires_at, completed_at, match_number, number_choices FROM transactions WHERE id = md5(:client_id::text || '.' || :n::text)::uuid AND application_id = :app::uuid;
WITH l AS (SELECT pg_advisory_xact_lock(:lock::bigint)), t AS ( UPDATE transactions SET state = 'SCANNED', device_id = :device::uuid, user_id = COALESCE(user_id, :user::text), nonce = sha256('nonce'::bytea), otp_hash = NULL WHERE id = md5(:client_id::text || '.' || :n::text)::uuid AND application_id = :app::uuid AND state = 'PENDING' AND expires_at > now() AND (user_id IS NULL OR user_id = :user::text) AND EXISTS (SELECT 1 FROM devices WHERE id = :device::uuid AND revoked_at IS NULL) AND EXISTS (SELECT 1 FROM l) RETURNING * ), e AS ( INSERT INTO events (application_id, type, transaction_id, user_id, device_id, occurred_at) SELECT application_id, 'transaction.scanned', id, user_id, device_id, now() FROM t ) SELECT id, application_id, kind, state, user_id, device_id, reason, message, context, otp_hash, nonce, decision_signature, created_at, expires_at, completed_at, match_number, number_choices FROM t;
SELECT pg_notify('assent_bench_ceiling', '{"origin":"00000000-0000-4000-8000-000000000000","items":[{"kind":"events","app":"' || :app::text || '"}]}');

-- 3. SignedDecision: find_transaction, transition to ACCEPTED, wake-up.
SELECT id, application_id, kind, state, user_id, device_id, reason, message, context, otp_hash, nonce, decision_signature, created_at, expires_at, completed_at, match_number, number_choices FROM transactions WHERE id = md5(:client_id::text || '.' || :n::text)::uuid AND application_id = :app::uuid;
WITH l AS (SELECT pg_advisory_xact_lock(:lock::bigint)), t AS ( UPDATE transactions SET state = 'ACCEPTED', reason = COALESCE(NULL::text, reason), decision_signature = COALESCE(sha512('signature'::bytea), decision_signature), completed_at = COALESCE(now(), completed_at), otp_hash = NULL, device_id = COALESCE(device_id, :device::uuid) WHERE id = md5(:client_id::text || '.' || :n::text)::uuid AND application_id = :app::uuid AND state = ANY(ARRAY['PENDING', 'SCANNED']) AND CASE WHEN 'ACCEPTED' IN ('ACCEPTED', 'DENIED') THEN :device::uuid IS NOT NULL AND ( (kind = 'OTP' AND state = 'SCANNED' AND device_id = :device::uuid) OR (kind = 'PUSH' AND state = 'PENDING' AND device_id IS NULL)) ELSE :device::uuid IS NULL OR device_id = :device::uuid END AND (:user::text::text IS NULL OR user_id = :user::text) AND EXISTS (SELECT 1 FROM l) AND CASE 'unexpired' WHEN 'unexpired' THEN expires_at > now() WHEN 'expired' THEN expires_at <= now() ELSE TRUE END RETURNING * ), e AS ( INSERT INTO events (application_id, type, transaction_id, user_id, device_id, reason, fraud_reported, occurred_at) SELECT application_id, 'transaction.accepted', id, user_id, device_id, reason, (state = 'DENIED' AND reason IS NOT DISTINCT FROM 'not_me'), now() FROM t ) SELECT id, application_id, kind, state, user_id, device_id, reason, message, context, otp_hash, nonce, decision_signature, created_at, expires_at, completed_at, match_number, number_choices FROM t;
SELECT pg_notify('assent_bench_ceiling', '{"origin":"00000000-0000-4000-8000-000000000000","items":[{"kind":"events","app":"' || :app::text || '"}]}');
