-- A wake-up that arrives while a runner holds a timer must not be lost: every schedule counts a
-- wake, the claim remembers the count it saw, and the holder completes or pushes back only the
-- firing it claimed (a newer wake leaves the timer due).
ALTER TABLE timers ADD COLUMN wakes bigint NOT NULL DEFAULT 0;
ALTER TABLE timers ADD COLUMN claimed_wakes bigint;

-- Timers whose work kept failing past the retry bound: parked for staff (`shop saga parked`,
-- `shop saga resume`), with the last error; an alert fires while any is here.
CREATE TABLE parked_timers (
    kind       text        NOT NULL,
    key        text        NOT NULL,
    payload    jsonb       NOT NULL DEFAULT '{}',
    attempts   integer     NOT NULL,
    reason     text        NOT NULL,
    parked_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, key)
);
