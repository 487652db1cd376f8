-- Accounts and sessions of the command API. Not event-sourced: credentials are security state,
-- not business history (the events say who did what through their actor metadata).
CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    email         text        NOT NULL UNIQUE,
    name          text        NOT NULL,
    password_hash text        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('customer', 'staff', 'auditor')),
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Refresh tokens rotate: each use replaces the token with a new one of the same family. A token
-- used twice (stolen and replayed) revokes its whole family. Only a hash of a token is stored.
CREATE TABLE refresh_tokens (
    id          uuid        PRIMARY KEY,
    family_id   uuid        NOT NULL,
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  bytea       NOT NULL UNIQUE,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    replaced_at timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- The first response to each Idempotency-Key, per caller.
CREATE TABLE idempotency_keys (
    scope         text        NOT NULL,
    key           text        NOT NULL,
    request_hash  bytea       NOT NULL,
    status        smallint,
    headers       jsonb,
    body          bytea,
    locked_until  timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

-- Coupons a cart can apply; the discount is snapshotted into the cart's event.
CREATE TABLE coupons (
    code        text    PRIMARY KEY,
    percent_off smallint CHECK (percent_off BETWEEN 1 AND 100),
    amount_off  bigint   CHECK (amount_off > 0),
    currency    text,
    active      boolean NOT NULL DEFAULT true,
    CHECK ((percent_off IS NULL) <> (amount_off IS NULL)),
    CHECK ((amount_off IS NULL) = (currency IS NULL))
);
