-- Group commit (eventlog::group): the appends of many commands, each on its own stream, in one
-- statement and so one transaction and one commit. Each command's rows are exactly what its
-- writer prepared (sequences, hashes chained from its stream's head, event ids, metadata,
-- recorded_at); each command succeeds or fails on its own:
--   * the xid-order guard: a command whose stream's last event is from a transaction newer than
--     this one is not written (as the single-command append's WHERE clause does);
--   * a conflict (unique_violation on the stream key, serialization_failure, deadlock_detected:
--     the SQLSTATEs eventlog::error::is_conflict retries) or any other error of one command
--     rolls back that command's rows only.
-- First every command in one INSERT inside one subtransaction (the common case: no conflict);
-- if that fails, each command again in its own subtransaction (at most 64 per group, so the
-- backend's subtransaction cache does not overflow). `transaction_id` stays the top-level xid
-- (pg_current_xact_id() inside a subtransaction), so the gap-safe reader is unaffected.
--
-- Arguments: per command (aggregate type, id, metadata, recorded_at, the stream's last
-- transaction id), then per event (the command it belongs to, 1-based, then its columns), each
-- command's events together and in sequence order. Returns one row per command, in order: its
-- number, and the log position of its last event, or NULL positions and the SQLSTATE that
-- refused it ('40001' for the xid-order guard).
CREATE FUNCTION append_group(
    p_aggregate_types      text[],
    p_aggregate_ids        text[],
    p_metadata             jsonb[],
    p_recorded_at          timestamptz[],
    p_last_transaction_ids bigint[],
    p_commands             integer[],
    p_sequences            bigint[],
    p_event_types          text[],
    p_event_versions       text[],
    p_payloads             jsonb[],
    p_event_ids            uuid[],
    p_prev_hashes          bytea[],
    p_hashes               bytea[])
RETURNS TABLE (command integer, transaction_id bigint, global_position bigint, refused text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    this_xid  xid8     := pg_current_xact_id();
    n         integer  := cardinality(p_aggregate_types);
    positions bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    outcomes  text[]   := array_fill(NULL::text, ARRAY[n]);
    written   bigint;
BEGIN
    -- the xid-order guard, per command
    FOR i IN 1 .. n LOOP
        IF this_xid < p_last_transaction_ids[i]::text::xid8 THEN
            outcomes[i] := '40001';
        END IF;
    END LOOP;

    -- every command in one INSERT
    BEGIN
        WITH e AS (
            SELECT e.*
              FROM unnest(p_commands, p_sequences, p_event_types, p_event_versions, p_payloads,
                          p_event_ids, p_prev_hashes, p_hashes)
                   WITH ORDINALITY AS e(cmd, sequence, event_type, event_version, payload,
                                        event_id, prev_hash, hash, ord)
             WHERE outcomes[e.cmd] IS NULL),
        inserted AS (
            INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                                payload, metadata, recorded_at, event_id, prev_hash, hash)
            SELECT p_aggregate_types[e.cmd], p_aggregate_ids[e.cmd], e.sequence, e.event_type,
                   e.event_version, e.payload, p_metadata[e.cmd], p_recorded_at[e.cmd],
                   e.event_id, e.prev_hash, e.hash
              FROM e
             ORDER BY e.ord
            RETURNING events.event_id, events.global_position)
        SELECT array_agg(per_command.last_position ORDER BY per_command.cmd)
          INTO positions
          FROM (SELECT g.cmd, max(ins.global_position) AS last_position
                  FROM generate_series(1, n) AS g(cmd)
                  LEFT JOIN e ON e.cmd = g.cmd
                  LEFT JOIN inserted ins ON ins.event_id = e.event_id
                 GROUP BY g.cmd) per_command;
    EXCEPTION WHEN OTHERS THEN
        -- a command failed: each again in its own subtransaction
        positions := array_fill(NULL::bigint, ARRAY[n]);
        FOR i IN 1 .. n LOOP
            CONTINUE WHEN outcomes[i] IS NOT NULL;
            BEGIN
                WITH inserted AS (
                    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                        event_version, payload, metadata, recorded_at, event_id,
                                        prev_hash, hash)
                    SELECT p_aggregate_types[i], p_aggregate_ids[i], e.sequence, e.event_type,
                           e.event_version, e.payload, p_metadata[i], p_recorded_at[i],
                           e.event_id, e.prev_hash, e.hash
                      FROM unnest(p_commands, p_sequences, p_event_types, p_event_versions,
                                  p_payloads, p_event_ids, p_prev_hashes, p_hashes)
                           WITH ORDINALITY AS e(cmd, sequence, event_type, event_version,
                                                payload, event_id, prev_hash, hash, ord)
                     WHERE e.cmd = i
                     ORDER BY e.ord
                    RETURNING events.global_position)
                SELECT max(inserted.global_position) INTO written FROM inserted;
                positions[i] := written;
            EXCEPTION WHEN OTHERS THEN
                outcomes[i] := SQLSTATE;
            END;
        END LOOP;
    END;

    FOR i IN 1 .. n LOOP
        command := i;
        IF outcomes[i] IS NULL AND positions[i] IS NOT NULL THEN
            transaction_id := this_xid::text::bigint;
            global_position := positions[i];
            refused := NULL;
        ELSE
            transaction_id := NULL;
            global_position := NULL;
            refused := coalesce(outcomes[i], 'P0002');
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
