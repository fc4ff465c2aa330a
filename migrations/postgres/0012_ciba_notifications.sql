-- CIBA ping and push delivery (docs/ciba.md). A ping or push notification
-- must carry the auth_req_id, of which 0011 keeps only the hash: for a
-- notified client's request the id itself is kept in notify_auth_req_id
-- until the client's endpoint acknowledges the notification (or delivery is
-- given up), then cleared. It redeems nothing on its own: the token
-- endpoint also wants the client's secret (an API key, stored hashed), and
-- a push client may not use the token endpoint at all.
-- notify_due_at is when the next attempt may run; notify_lease_owner and
-- notify_lease_until say which replica posts it now (one at a time; another
-- takes over when the lease ends); notify_error the last failure.
ALTER TABLE ciba_requests ADD COLUMN notify_auth_req_id TEXT;
ALTER TABLE ciba_requests ADD COLUMN notify_due_at TIMESTAMPTZ;
ALTER TABLE ciba_requests ADD COLUMN notify_lease_owner UUID;
ALTER TABLE ciba_requests ADD COLUMN notify_lease_until TIMESTAMPTZ;
ALTER TABLE ciba_requests ADD COLUMN notify_error TEXT;
CREATE INDEX ciba_requests_to_notify ON ciba_requests (notify_due_at)
    WHERE notify_auth_req_id IS NOT NULL;
