-- PostgreSQL twin of ../011_audit.sql.
-- Audit log (issue 10, SPEC F-93): one row per event, appended in the same transaction as the event
-- (storage/base.py Unit.emit → storage/audit.py), chained per project with SHA-256 so that an edited,
-- deleted or reordered row is found by `huddle audit verify`. seq is taken under the project's
-- advisory write lock (storage/postgres.py), so it is dense and in commit order across instances.
-- Rows written before this migration have no audit rows: the chain starts at the first change after it.
CREATE TABLE audit_log (
    project     TEXT COLLATE "C" NOT NULL,
    seq         BIGINT NOT NULL,
    ts          DOUBLE PRECISION NOT NULL,
    action      TEXT COLLATE "C" NOT NULL,
    actor       TEXT COLLATE "C",
    principal   TEXT COLLATE "C" NOT NULL,
    token_id    TEXT COLLATE "C" NOT NULL,
    scopes      TEXT COLLATE "C" NOT NULL,
    cursor      BIGINT NOT NULL,
    data_sha256 TEXT COLLATE "C" NOT NULL,
    prev_hash   TEXT COLLATE "C" NOT NULL,
    hash        TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (project, seq)
);
-- Where each project's chain begins: events after `audited_after` must each have an audit row. Set
-- here for the projects that already have events (their past predates the audit log), and by the
-- first audit row of any other project; so deleting a project's whole audit log is detected too.
CREATE TABLE audit_origin (
    project       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    audited_after BIGINT NOT NULL
);
INSERT INTO audit_origin (project, audited_after) SELECT project, MAX(cursor) FROM events GROUP BY project;
-- Append-only, as far as the schema can say it: Huddle never updates a row, so an UPDATE is refused.
-- DELETE stays possible: `huddle import --force` replaces a project's rows, and a deletion breaks the chain.
CREATE FUNCTION huddle_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit_log is append-only: its rows are never updated'; END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log FOR EACH ROW EXECUTE FUNCTION huddle_audit_append_only();
