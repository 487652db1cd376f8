-- Customer notifications: one row per event that warrants a message (the event id is the key, so
-- an event enqueues at most one message however often it is read), sent at least once by the
-- notifier; `sent_at` marks delivery to the SMTP server.
CREATE TABLE notification_outbox (
    event_id      uuid        PRIMARY KEY,
    kind          text        NOT NULL,
    recipient     text        NOT NULL,
    subject       text        NOT NULL,
    body          text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    attempts      integer     NOT NULL DEFAULT 0,
    claimed_until timestamptz,
    last_error    text,
    sent_at       timestamptz
);
CREATE INDEX notification_outbox_unsent ON notification_outbox (created_at) WHERE sent_at IS NULL;
