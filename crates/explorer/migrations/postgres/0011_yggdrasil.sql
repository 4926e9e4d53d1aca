-- The node's Yggdrasil subnet, which it gives containers addresses from, as its latest
-- heartbeat said; NULL when it runs no Yggdrasil.
ALTER TABLE nodes ADD COLUMN yggdrasil TEXT;
