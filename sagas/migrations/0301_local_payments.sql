-- The local payment gateway's persistent mode (`LocalGateway::persistent`): the state a real
-- payment provider keeps on its side, so intents authorized by one process can be captured,
-- canceled or refunded by the next. Every gateway call is one transaction that claims its
-- idempotency key first and locks the intent it changes (SELECT ... FOR UPDATE).

-- PaymentIntents. `seq` gives the creation order.
CREATE TABLE local_payment_intents (
    id             text        PRIMARY KEY,
    seq            bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    order_id       uuid        NOT NULL,
    amount_minor   bigint      NOT NULL,
    currency       text        NOT NULL,
    payment_method text        NOT NULL,
    status         text        NOT NULL CHECK (status IN
                       ('requires_payment_method', 'requires_capture', 'succeeded', 'canceled')),
    captured_minor bigint      NOT NULL DEFAULT 0 CHECK (captured_minor >= 0),
    refunded_minor bigint      NOT NULL DEFAULT 0
                       CHECK (refunded_minor >= 0 AND refunded_minor <= captured_minor),
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- Refunds of captured intents. `seq` gives their order within an intent.
CREATE TABLE local_payment_refunds (
    id           text        PRIMARY KEY,
    seq          bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    intent_id    text        NOT NULL REFERENCES local_payment_intents (id),
    amount_minor bigint      NOT NULL CHECK (amount_minor > 0),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX local_payment_refunds_intent ON local_payment_refunds (intent_id, seq);

-- What each idempotency key produced: the request's fingerprint (sha256) and the answer. A row is
-- inserted first thing in a call's transaction (claiming the key: a concurrent call with the same
-- key waits for it) and gets its `response` before commit; refused calls roll back and leave none.
CREATE TABLE local_payment_idempotency (
    key            text        PRIMARY KEY,
    operation      text        NOT NULL,
    request_sha256 bytea       NOT NULL,
    response       jsonb,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- How many calls of each kind reached the gateway (`authorize`, `capture`, `cancel`, `refund`,
-- and `replayed` for answers given from an idempotency key).
CREATE TABLE local_payment_calls (
    kind  text   PRIMARY KEY,
    count bigint NOT NULL
);
