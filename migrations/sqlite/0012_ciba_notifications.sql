-- CIBA ping and push delivery; see the PostgreSQL migration of the same number.
ALTER TABLE ciba_requests ADD COLUMN notify_auth_req_id TEXT;
ALTER TABLE ciba_requests ADD COLUMN notify_due_at INTEGER;
ALTER TABLE ciba_requests ADD COLUMN notify_lease_owner TEXT;
ALTER TABLE ciba_requests ADD COLUMN notify_lease_until INTEGER;
ALTER TABLE ciba_requests ADD COLUMN notify_error TEXT;
CREATE INDEX ciba_requests_to_notify ON ciba_requests (notify_due_at)
    WHERE notify_auth_req_id IS NOT NULL;
