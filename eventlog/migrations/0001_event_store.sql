-- The event store: postgres-es's `events` table, extended with a gap-safe log order
-- (transaction_id, global_position), an event id, a record time and a per-stream hash chain.
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
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    event_id        uuid        NOT NULL DEFAULT gen_random_uuid(),
    prev_hash       bytea       NOT NULL,
    hash            bytea       NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

-- The total order every subscription reads in.
CREATE UNIQUE INDEX events_log_order ON events (transaction_id, global_position);
CREATE UNIQUE INDEX events_event_id ON events (event_id);

-- What a hash covers, in one place. `shop audit verify` builds the same text in Rust from the
-- columns (eventlog::audit::hash_input) and must agree with this function byte for byte.
CREATE FUNCTION event_hash_input(e events) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT concat_ws(E'\x1f',
        e.aggregate_type, e.aggregate_id, e.sequence::text, e.event_type, e.event_version,
        e.payload::text, e.metadata::text, e.event_id::text,
        extract(epoch FROM e.recorded_at)::text)
$$;

-- Chains each new event to its predecessor in the stream, and refuses an append whose
-- transaction id is older than its predecessor's: that would make the log order contradict
-- the stream order (a transaction that took its xid before the stream's head committed).
-- The caller retries such a conflict like any other optimistic-concurrency conflict.
CREATE FUNCTION events_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    predecessor record;
BEGIN
    IF NEW.sequence = 1 THEN
        NEW.prev_hash := decode(repeat('00', 32), 'hex');
    ELSE
        SELECT hash, transaction_id INTO predecessor
          FROM events
         WHERE aggregate_type = NEW.aggregate_type
           AND aggregate_id = NEW.aggregate_id
           AND sequence = NEW.sequence - 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'event % of stream %/% has no predecessor',
                NEW.sequence, NEW.aggregate_type, NEW.aggregate_id
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        IF predecessor.transaction_id > NEW.transaction_id THEN
            RAISE EXCEPTION 'stream %/% head moved under an older transaction',
                NEW.aggregate_type, NEW.aggregate_id
                USING ERRCODE = 'serialization_failure';
        END IF;
        NEW.prev_hash := predecessor.hash;
    END IF;
    NEW.hash := sha256(NEW.prev_hash || convert_to(event_hash_input(NEW), 'UTF8'));
    RETURN NEW;
END
$$;

CREATE TRIGGER events_chain BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_chain();

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

-- postgres-es's snapshot table, with the aggregate's snapshot format version.
CREATE TABLE snapshots (
    aggregate_type   text        NOT NULL,
    aggregate_id     text        NOT NULL,
    last_sequence    bigint      NOT NULL,
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
