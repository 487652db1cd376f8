-- The event store: postgres-es's `events` table, extended with a gap-safe log order
-- (transaction_id, global_position), an event id, a record time and a per-stream hash chain
-- (computed by the writer, checked by `shop audit verify`).
CREATE TABLE events (
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    sequence        bigint      NOT NULL CHECK (sequence >= 1),
    event_type      text        NOT NULL,
    event_version   text        NOT NULL,
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    global_position bigint      GENERATED ALWAYS AS IDENTITY,
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at     timestamptz NOT NULL,
    event_id        uuid        NOT NULL,
    prev_hash       bytea       NOT NULL,
    hash            bytea       NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

-- The total order every subscription reads in.
CREATE UNIQUE INDEX events_log_order ON events (transaction_id, global_position);
CREATE UNIQUE INDEX events_event_id ON events (event_id);

-- What a hash covers, mirrored in SQL for auditors who want to check a chain by hand.
-- The writer (eventlog::hash) computes hashes in Rust from the same fields:
--   hash = sha256(prev_hash || event_hash_input(event)), prev_hash of a stream's first event = 32 zero bytes,
-- where the payload and metadata texts are PostgreSQL's canonical jsonb text.
CREATE FUNCTION event_hash_input(e events) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT concat_ws(E'\x1f',
        e.aggregate_type, e.aggregate_id, e.sequence::text, e.event_type, e.event_version,
        e.payload::text, e.metadata::text, e.event_id::text,
        (extract(epoch FROM e.recorded_at) * 1000000)::bigint::text)
$$;

-- Events are immutable: the application never updates or deletes them. (A superuser can still
-- drop the trigger; that is what the hash chain and `shop audit verify` are for.)
CREATE FUNCTION events_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable' USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_immutable BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_immutable();

-- postgres-es's snapshot table, with the aggregate's snapshot format version and what the next
-- append needs to know of the event the snapshot ends at (its hash and transaction id).
CREATE TABLE snapshots (
    aggregate_type   text        NOT NULL,
    aggregate_id     text        NOT NULL,
    last_sequence    bigint      NOT NULL,
    last_hash        bytea       NOT NULL,
    last_transaction_id bigint   NOT NULL,
    snapshot_version bigint      NOT NULL,
    payload          jsonb       NOT NULL,
    taken_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- One row per subscription (projector, saga runner, relay): where it has read up to.
CREATE TABLE subscription_checkpoints (
    name            text        PRIMARY KEY,
    transaction_id  xid8        NOT NULL DEFAULT '0',
    global_position bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
