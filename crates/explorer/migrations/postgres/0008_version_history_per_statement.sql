-- Creates now arrive many to a statement (the writer inserts a batch's new workloads together):
-- keep their versions with one set-based insert per statement, not a PL/pgSQL call per row.
-- (Updates stay row by row: one a statement.)
DROP TRIGGER workload_versions_on_create ON workloads;

CREATE FUNCTION keep_created_workload_versions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workload_versions (id, version, signed, accepted_at)
    SELECT id, version, signed, created_at FROM created;
    RETURN NULL;
END;
$$;

CREATE TRIGGER workload_versions_on_create AFTER INSERT ON workloads
    REFERENCING NEW TABLE AS created
    FOR EACH STATEMENT EXECUTE FUNCTION keep_created_workload_versions();
