-- Every version a workload is accepted at is kept in workload_versions by the database itself,
-- in the statement that stores it, so a write costs one statement, not two.
CREATE FUNCTION keep_workload_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO workload_versions (id, version, signed, accepted_at)
    VALUES (NEW.id, NEW.version, NEW.signed, CASE WHEN TG_OP = 'INSERT' THEN NEW.created_at ELSE NEW.updated_at END);
    RETURN NULL;
END;
$$;

CREATE TRIGGER workload_versions_on_create AFTER INSERT ON workloads
    FOR EACH ROW EXECUTE FUNCTION keep_workload_version();

CREATE TRIGGER workload_versions_on_update AFTER UPDATE OF version ON workloads
    FOR EACH ROW WHEN (NEW.version <> OLD.version) EXECUTE FUNCTION keep_workload_version();
