-- Every version a workload is accepted at is kept in workload_versions by the database itself,
-- in the statement that stores it, so a write costs one statement, not two.
CREATE TRIGGER workload_versions_on_create AFTER INSERT ON workloads
BEGIN
    INSERT INTO workload_versions (id, version, signed, accepted_at)
    VALUES (NEW.id, NEW.version, NEW.signed, NEW.created_at);
END;

CREATE TRIGGER workload_versions_on_update AFTER UPDATE OF version ON workloads
WHEN NEW.version <> OLD.version
BEGIN
    INSERT INTO workload_versions (id, version, signed, accepted_at)
    VALUES (NEW.id, NEW.version, NEW.signed, NEW.updated_at);
END;
