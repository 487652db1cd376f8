-- append_group (migration 0002) becomes the fallback of group commit only: a group is first
-- written by one plain INSERT (eventlog::group), and this function runs only when that INSERT
-- failed, so its own first try of every command in one INSERT is dropped. Each command is
-- written in its own subtransaction (at most 64 per group, so the backend's subtransaction
-- cache does not overflow); a command is refused without an error when the xid-order guard
-- refuses it ('40001') or its first sequence is taken already ('23505': a stale cache, a stream
-- guessed new), and with its SQLSTATE when its INSERT fails (a conflict with a write that was
-- not committed yet, or any other error). `transaction_id` stays the top-level xid.
-- Arguments and result as in 0002: per command (aggregate type, id, metadata, recorded_at, the
-- stream's last transaction id), per event (its command, 1-based, and its columns); one row per
-- command with the log position of its last event, or NULL positions and the refusing SQLSTATE.
CREATE OR REPLACE FUNCTION append_group(
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
    this_xid xid8    := pg_current_xact_id();
    n        integer := cardinality(p_aggregate_types);
    lo       integer := 1;
    hi       integer;
    written  bigint;
BEGIN
    FOR i IN 1 .. n LOOP
        hi := lo;
        WHILE hi < cardinality(p_commands) AND p_commands[hi + 1] = i LOOP
            hi := hi + 1;
        END LOOP;
        command := i;
        transaction_id := NULL;
        global_position := NULL;
        refused := NULL;
        IF this_xid < p_last_transaction_ids[i]::text::xid8 THEN
            refused := '40001';
        ELSIF EXISTS (SELECT 1 FROM events h
                       WHERE h.aggregate_type = p_aggregate_types[i]
                         AND h.aggregate_id = p_aggregate_ids[i]
                         AND h.sequence = p_sequences[lo]) THEN
            refused := '23505';
        ELSE
            BEGIN
                WITH inserted AS (
                    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                        event_version, payload, metadata, recorded_at, event_id,
                                        prev_hash, hash)
                    SELECT p_aggregate_types[i], p_aggregate_ids[i], e.sequence, e.event_type,
                           e.event_version, e.payload, p_metadata[i], p_recorded_at[i],
                           e.event_id, e.prev_hash, e.hash
                      FROM unnest(p_sequences[lo:hi], p_event_types[lo:hi],
                                  p_event_versions[lo:hi], p_payloads[lo:hi],
                                  p_event_ids[lo:hi], p_prev_hashes[lo:hi],
                                  p_hashes[lo:hi])
                           WITH ORDINALITY AS e(sequence, event_type, event_version, payload,
                                                event_id, prev_hash, hash, ord)
                     ORDER BY e.ord
                    RETURNING events.global_position)
                SELECT max(inserted.global_position) INTO written FROM inserted;
                transaction_id := this_xid::text::bigint;
                global_position := written;
            EXCEPTION WHEN OTHERS THEN
                refused := SQLSTATE;
            END;
        END IF;
        RETURN NEXT;
        lo := hi + 1;
    END LOOP;
END
$$;
