-- Durable timers: work due at a time, claimed by one runner at a time (FOR UPDATE SKIP LOCKED).
-- `kind` says what to do (drive a checkout, release an expired reservation), `key` names the
-- subject, so scheduling the same timer twice keeps one row (the earlier due time wins).
CREATE TABLE timers (
    kind          text        NOT NULL,
    key           text        NOT NULL,
    due_at        timestamptz NOT NULL,
    payload       jsonb       NOT NULL DEFAULT '{}',
    claimed_until timestamptz,
    claim         uuid,
    attempts      integer     NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, key)
);
CREATE INDEX timers_due ON timers (due_at);

-- Order numbers, assigned at placement in order: no gaps from failed checkouts (a failed
-- checkout still has a placed, then failed, order).
CREATE TABLE order_numbers (
    order_id    uuid   PRIMARY KEY,
    number      bigint NOT NULL UNIQUE,
    assigned_at timestamptz NOT NULL DEFAULT now()
);

-- Stripe webhook events already handled (Stripe delivers at least once).
CREATE TABLE stripe_events (
    id          text        PRIMARY KEY,
    event_type  text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
