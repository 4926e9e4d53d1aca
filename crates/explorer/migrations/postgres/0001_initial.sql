-- zgrid explorer schema, PostgreSQL flavour. Keep in step with ../sqlite/0001_initial.sql.
CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL,
    public_key TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE TABLE farms (
    id BIGSERIAL PRIMARY KEY,
    owner BIGINT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL UNIQUE,
    public_ips TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    farm_id BIGINT NOT NULL REFERENCES farms(id),
    hostname TEXT NOT NULL,
    total_cru BIGINT NOT NULL, total_mru BIGINT NOT NULL, total_sru BIGINT NOT NULL, total_hru BIGINT NOT NULL,
    used_cru BIGINT NOT NULL, used_mru BIGINT NOT NULL, used_sru BIGINT NOT NULL, used_hru BIGINT NOT NULL,
    country TEXT NOT NULL,
    city TEXT NOT NULL,
    location TEXT NOT NULL,
    public_endpoint TEXT,
    version TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
CREATE INDEX nodes_farm ON nodes(farm_id);
CREATE TABLE workloads (
    id TEXT PRIMARY KEY,
    owner BIGINT NOT NULL REFERENCES users(id),
    node_id TEXT NOT NULL REFERENCES nodes(node_id),
    kind TEXT NOT NULL,
    version BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    signed TEXT NOT NULL,
    network_name TEXT,
    ipaddress TEXT,
    subnet TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT,
    deleted_by BIGINT,
    delete_request TEXT,
    result TEXT,
    feed_seq BIGINT NOT NULL
);
CREATE INDEX workloads_feed ON workloads(node_id, feed_seq);
CREATE INDEX workloads_owner ON workloads(owner, state);
CREATE INDEX workloads_expiry ON workloads(state, expires_at);
CREATE TABLE workload_versions (
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    signed TEXT NOT NULL,
    accepted_at BIGINT NOT NULL,
    PRIMARY KEY (id, version)
);
CREATE TABLE results (
    id BIGSERIAL PRIMARY KEY,
    workload_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    state TEXT NOT NULL,
    signed TEXT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX results_workload ON results(workload_id);
CREATE TABLE nonces (
    signer TEXT NOT NULL,
    nonce TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (signer, nonce)
);
CREATE INDEX nonces_expiry ON nonces(expires_at);
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('feed', 0);
