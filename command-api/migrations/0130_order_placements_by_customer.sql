-- A customer's order placements, for the verified-purchase badge of reviews (and the privacy
-- export): a partial index over `OrderPlaced` events only, so no other append pays for it.
-- The customer id is never sealed (only the shipping address is personal data).
CREATE INDEX IF NOT EXISTS events_order_placed_by_customer
    ON events ((payload->'OrderPlaced'->>'customer'))
 WHERE aggregate_type = 'order' AND event_type = 'OrderPlaced';
