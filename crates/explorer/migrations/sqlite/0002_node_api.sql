-- Where a node agent's own API (workload logs) answers.
ALTER TABLE nodes ADD COLUMN api_url TEXT;
