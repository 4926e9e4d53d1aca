-- The public IPv6 prefix the node gives containers addresses from, as its latest heartbeat
-- said; NULL when it has none.
ALTER TABLE nodes ADD COLUMN public_ipv6 TEXT;
