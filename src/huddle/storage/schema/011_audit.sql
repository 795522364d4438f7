-- Audit log (issue 10, SPEC F-93): one row per event, appended in the same transaction as the event
-- (storage/base.py Unit.emit → storage/audit.py), chained per project with SHA-256 so that an edited,
-- deleted or reordered row is found by `huddle audit verify`.
-- seq is dense per project in commit order; the first row of a project chains from a fixed genesis
-- value. The chain holds the event's cursor and a SHA-256 of its stored data, not the data itself:
-- the event log keeps the content, the audit log proves what it was.
-- Rows written before this migration have no audit rows: the chain starts at the first change after it.
CREATE TABLE audit_log (
    project     TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    ts          REAL NOT NULL,
    action      TEXT NOT NULL,
    actor       TEXT,
    principal   TEXT NOT NULL,
    token_id    TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    cursor      INTEGER NOT NULL,
    data_sha256 TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    PRIMARY KEY (project, seq)
) WITHOUT ROWID;
-- Where each project's chain begins: events after `audited_after` must each have an audit row. Set
-- here for the projects that already have events (their past predates the audit log), and by the
-- first audit row of any other project; so deleting a project's whole audit log is detected too.
CREATE TABLE audit_origin (
    project       TEXT NOT NULL PRIMARY KEY,
    audited_after INTEGER NOT NULL
);
INSERT INTO audit_origin (project, audited_after) SELECT project, MAX(cursor) FROM events GROUP BY project;
-- Append-only, as far as the schema can say it: Huddle never updates a row, so an UPDATE is refused.
-- (Anyone who can write the file can drop this trigger too; the hash chain is what detects that.)
-- DELETE stays possible: `huddle import --force` replaces a project's rows, and a deletion breaks the chain.
CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: its rows are never updated');
END;
