-- PostgreSQL twin of ../009_instances.sql.
-- Huddle processes serving a project, with a heartbeat (issue 9). A queued lock request belongs
-- to the process holding its caller's connection; when that process stops heartbeating its
-- queue entries are dropped, whichever instance runs the sweep — never "every entry not mine".
CREATE TABLE instances (
    project    TEXT COLLATE "C" NOT NULL,
    instance   TEXT COLLATE "C" NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    last_seen  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (project, instance)
);
