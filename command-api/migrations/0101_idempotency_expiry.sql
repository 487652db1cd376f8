-- Idempotency keys expire (a day by default): the purge deletes by age, and a key older than
-- that is taken over by its next use instead of replayed.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- Responses of /api/auth/* were kept until now, refresh and access tokens in plain text: they
-- are never kept any more, and the ones already kept go.
DELETE FROM idempotency_keys WHERE position(convert_to('"refresh_token"', 'UTF8') IN body) > 0;
