-- Which WireGuard the node's networks use ("kernel", or "userspace: <why not the kernel's>"),
-- as its latest heartbeat said; NULL until a node that reports it sends one.
ALTER TABLE nodes ADD COLUMN wireguard TEXT;
