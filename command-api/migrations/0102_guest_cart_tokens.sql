-- The secret of each guest cart (the `Cart-Token` its holder sends): only a SHA-256 of it is
-- stored. A credential, not business history, so not in the cart's events (which travel to
-- Kafka, Redis and every projection). Guest carts opened before this table have no token and
-- can no longer be used: their ids could be derived from an Idempotency-Key.
CREATE TABLE guest_cart_tokens (
    cart_id    uuid        PRIMARY KEY,
    token_hash bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
