-- Which hypervisor the node's VMs use ("kvm", "tcg: ...", "none: ..."), as its latest
-- heartbeat said; NULL until a node that has VMs reports it.
ALTER TABLE nodes ADD COLUMN hypervisor TEXT;
