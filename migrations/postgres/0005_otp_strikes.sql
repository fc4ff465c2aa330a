-- The wrong-OTP cooling-off is one atomic step: each lookup reserves a
-- strike on the device row (under its row lock), a successful one gives it
-- back. The per-failure log it replaces counted and inserted in two steps.
ALTER TABLE devices ADD COLUMN otp_strikes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN otp_window_start TIMESTAMPTZ;
DROP TABLE otp_failures;
