-- The database work of one push login, exactly as assent-server issues it
-- (server/src/store/postgres/*.rs, service/push.rs, notify/postgres.rs), for
-- `pgbench -n -M prepared -f push.sql`; `assent-bench push` reports its tps
-- as `ceiling_flows_per_s`. One pgbench transaction = one push:
--   * the two writes, each one autocommitted statement under the
--     application's advisory lock (as in flow.sql): insert_transaction (kind
--     PUSH) and the transition to ACCEPTED that claims the device;
--   * the cross-replica wake-ups: events + the confirmation for the device
--     after the create, events after the decision (on channel
--     assent_bench_ceiling, see flow.sql);
--   * the reads of the request path: API key lookup, the user's devices, the
--     three anti-fatigue reads (fraud report, open push, unanswered count),
--     find_transaction before the decision, and the user's devices again to
--     withdraw the request from the others (after_transition).
-- Left out, as in flow.sql: Subscribe's reads, sqlx's pool pings, and all
-- non-database work. Each pgbench client pushes to its own 1000 users
-- (ceiling-<client>-<u>), so the one-open-push index never collides and the
-- per-user push history stays short, as with the bench's many devices.
-- Variables (-D): app, lock, key, device (an enrolled device's uuid).
\set n random(1, 9223372036854775806)
\set u random(1, 1000)

-- 1. CreatePushAuthentication.
SELECT k.secret_hash, a.id, a.name, a.created_at FROM api_keys k JOIN applications a ON a.id = k.application_id WHERE k.id = :key::uuid AND k.revoked_at IS NULL;
SELECT d.id, d.application_id, a.name AS application_name, d.user_id, d.name, d.public_key, d.created_at, d.last_seen_at, d.revoked_at FROM devices d JOIN applications a ON a.id = d.application_id WHERE d.application_id = :app::uuid AND (('ceiling-' || :client_id::text || '-' || :u::text)::text IS NULL OR d.user_id = ('ceiling-' || :client_id::text || '-' || :u::text)) ORDER BY d.created_at, d.id;
SELECT max(occurred_at) FROM events WHERE application_id = :app::uuid AND user_id = ('ceiling-' || :client_id::text || '-' || :u::text) AND fraud_reported;
SELECT id, application_id, kind, state, user_id, device_id, reason, message, context, otp_hash, nonce, decision_signature, created_at, expires_at, completed_at, match_number, number_choices FROM transactions WHERE application_id = :app::uuid AND user_id = ('ceiling-' || :client_id::text || '-' || :u::text) AND kind = 'PUSH' AND state = 'PENDING';
SELECT count(*) FROM transactions t WHERE t.application_id = :app::uuid AND t.user_id = ('ceiling-' || :client_id::text || '-' || :u::text) AND t.kind = 'PUSH' AND t.created_at > now() - interval '600 seconds' AND t.created_at > COALESCE((SELECT max(a.completed_at) FROM transactions a WHERE a.application_id = :app::uuid AND a.user_id = ('ceiling-' || :client_id::text || '-' || :u::text) AND a.kind = 'PUSH' AND a.state = 'ACCEPTED'), '-infinity');
WITH l AS (SELECT pg_advisory_xact_lock(:lock::bigint)), t AS ( INSERT INTO transactions (id, application_id, kind, state, user_id, message, context, otp_hash, created_at, expires_at, nonce, match_number, number_choices) SELECT md5(:client_id::text || '.' || :n::text)::uuid, :app::uuid, 'PUSH', 'PENDING', ('ceiling-' || :client_id::text || '-' || :u::text), 'Log in to the assent-bench ceiling?', '{"bench":"push"}'::jsonb, NULL::bytea, now(), now() + interval '120 seconds', sha256('nonce'::bytea), NULL::smallint, '' WHERE EXISTS (SELECT 1 FROM l) RETURNING * ), e AS ( INSERT INTO events (application_id, type, transaction_id, user_id, occurred_at, position) SELECT application_id, 'transaction.created', id, user_id, created_at, ((pg_current_xact_id()::text::bigint << 20) + set_config('assent.event_ordinal', (COALESCE(NULLIF(current_setting('assent.event_ordinal', true), ''), '0')::int + 1)::text, true)::bigint) FROM t ) SELECT id, application_id, kind, state, user_id, device_id, reason, message, context, otp_hash, nonce, decision_signature, created_at, expires_at, completed_at, match_number, number_choices FROM t;
SELECT pg_notify('assent_bench_ceiling', '{"origin":"00000000-0000-4000-8000-000000000000","items":[{"kind":"events","app":"' || :app::text || '"},{"kind":"confirm","device":"' || :device::text || '","app":"' || :app::text || '","tx":"' || md5(:client_id::text || '.' || :n::text)::uuid::text || '"}]}');

-- 2. SignedDecision: find_transaction, transition to ACCEPTED, wake-up, withdraw.
SELECT id, application_id, kind, state, user_id, device_id, reason, message, context, otp_hash, nonce, decision_signature, created_at, expires_at, completed_at, match_number, number_choices FROM transactions WHERE id = md5(:client_id::text || '.' || :n::text)::uuid AND application_id = :app::uuid;
WITH l AS (SELECT pg_advisory_xact_lock(:lock::bigint)), t AS ( UPDATE transactions SET state = 'ACCEPTED', reason = COALESCE(NULL::text, reason), decision_signature = COALESCE(sha512('signature'::bytea), decision_signature), completed_at = COALESCE(now(), completed_at), otp_hash = NULL, device_id = COALESCE(device_id, :device::uuid) WHERE id = md5(:client_id::text || '.' || :n::text)::uuid AND application_id = :app::uuid AND state = ANY(ARRAY['PENDING', 'SCANNED']) AND CASE WHEN 'ACCEPTED' IN ('ACCEPTED', 'DENIED') THEN :device::uuid IS NOT NULL AND ( (kind = 'OTP' AND state = 'SCANNED' AND device_id = :device::uuid) OR (kind = 'PUSH' AND state = 'PENDING' AND device_id IS NULL)) ELSE :device::uuid IS NULL OR device_id = :device::uuid END AND (('ceiling-' || :client_id::text || '-' || :u::text)::text IS NULL OR user_id = ('ceiling-' || :client_id::text || '-' || :u::text)) AND EXISTS (SELECT 1 FROM l) AND CASE 'unexpired' WHEN 'unexpired' THEN expires_at > now() WHEN 'expired' THEN expires_at <= now() ELSE TRUE END RETURNING * ), e AS ( INSERT INTO events (application_id, type, transaction_id, user_id, device_id, reason, fraud_reported, occurred_at, position) SELECT application_id, 'transaction.accepted', id, user_id, device_id, reason, (state = 'DENIED' AND reason IS NOT DISTINCT FROM 'not_me'), now(), ((pg_current_xact_id()::text::bigint << 20) + set_config('assent.event_ordinal', (COALESCE(NULLIF(current_setting('assent.event_ordinal', true), ''), '0')::int + 1)::text, true)::bigint) FROM t ) SELECT id, application_id, kind, state, user_id, device_id, reason, message, context, otp_hash, nonce, decision_signature, created_at, expires_at, completed_at, match_number, number_choices FROM t;
SELECT pg_notify('assent_bench_ceiling', '{"origin":"00000000-0000-4000-8000-000000000000","items":[{"kind":"events","app":"' || :app::text || '"}]}');
SELECT d.id, d.application_id, a.name AS application_name, d.user_id, d.name, d.public_key, d.created_at, d.last_seen_at, d.revoked_at FROM devices d JOIN applications a ON a.id = d.application_id WHERE d.application_id = :app::uuid AND (('ceiling-' || :client_id::text || '-' || :u::text)::text IS NULL OR d.user_id = ('ceiling-' || :client_id::text || '-' || :u::text)) ORDER BY d.created_at, d.id;
