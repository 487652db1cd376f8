-- Customer data beside the account (owned by the `accounts` crate; not events: see
-- accounts/src/address_book.rs). Personal fields: users.phone, customer_addresses' label and
-- address columns.
ALTER TABLE users ADD COLUMN phone text;

-- The address book: at most one default shipping and one default billing address per customer.
CREATE TABLE customer_addresses (
    id               uuid        PRIMARY KEY,
    user_id          uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    label            text,
    name             text        NOT NULL,
    line1            text        NOT NULL,
    line2            text,
    city             text        NOT NULL,
    postal_code      text        NOT NULL,
    country          text        NOT NULL,
    default_shipping boolean     NOT NULL DEFAULT false,
    default_billing  boolean     NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customer_addresses_user ON customer_addresses (user_id);
CREATE UNIQUE INDEX customer_addresses_one_default_shipping
    ON customer_addresses (user_id) WHERE default_shipping;
CREATE UNIQUE INDEX customer_addresses_one_default_billing
    ON customer_addresses (user_id) WHERE default_billing;

-- The device (User-Agent) a session (refresh-token family) was started from, for the list of
-- a customer's sessions. Sessions started before this table have none.
CREATE TABLE session_devices (
    family_id  uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_agent text,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Password reset tokens: only a SHA-256 of each is stored; single use, short-lived.
CREATE TABLE password_reset_tokens (
    token_hash bytea       PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX password_reset_tokens_user ON password_reset_tokens (user_id);
