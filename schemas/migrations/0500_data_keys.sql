-- Data keys of personal data sealed in events (schemas::personal): one per subject (a customer,
-- or a guest checkout's order), wrapped by the master key from configuration, which never
-- reaches the database. Erasure sets wrapped_key to NULL and keeps the row as a tombstone, so a
-- subject erased never gets a key again.
CREATE TABLE data_keys (
    subject     text        PRIMARY KEY,
    customer_id uuid,
    wrapped_key bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    erased_at   timestamptz,
    CHECK ((wrapped_key IS NULL) = (erased_at IS NOT NULL))
);
CREATE INDEX data_keys_customer ON data_keys (customer_id) WHERE customer_id IS NOT NULL;

-- A value sealed with the master key, so a process started with another master key stops at
-- once with a clear error instead of failing on the first sealed field it reads.
CREATE TABLE data_key_master (
    id          boolean     PRIMARY KEY DEFAULT true CHECK (id),
    check_value bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
