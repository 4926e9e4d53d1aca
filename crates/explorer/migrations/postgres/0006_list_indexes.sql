-- Indexes for listings paged by key (GET /v1/nodes, GET /v1/workloads, the cockpit): each
-- filter and order is a range of one index, ending in the primary key that breaks ties, so a
-- page reads its rows and not the table. Keep in step with ../sqlite/0006_list_indexes.sql.

-- Nodes: registration order (the API's), within a farm too; place; free capacity (filters
-- and orders); last seen (alive filter and order).
DROP INDEX nodes_farm;
CREATE INDEX nodes_farm ON nodes (farm_id, created_at, node_id);
CREATE INDEX nodes_registered ON nodes (created_at, node_id);
CREATE INDEX nodes_place ON nodes (LOWER(country), LOWER(city), node_id);
CREATE INDEX nodes_free_cru ON nodes ((total_cru - used_cru), node_id);
CREATE INDEX nodes_free_mru ON nodes ((total_mru - used_mru), node_id);
CREATE INDEX nodes_free_sru ON nodes ((total_sru - used_sru), node_id);
CREATE INDEX nodes_free_hru ON nodes ((total_hru - used_hru), node_id);
CREATE INDEX nodes_last_seen ON nodes (last_seen, node_id);

-- Workloads, newest first: by owner and state, by owner, and all. The first also serves what
-- the old (owner, state) index did.
DROP INDEX workloads_owner;
CREATE INDEX workloads_owner ON workloads (owner, state, created_at, id);
CREATE INDEX workloads_owner_created ON workloads (owner, created_at, id);
CREATE INDEX workloads_created ON workloads (created_at, id);
