-- PostgreSQL twin of ../006_client_hooks.sql: the same tables and indexes in PostgreSQL types (BIGINT, DOUBLE PRECISION, TEXT COLLATE "C": see 001).
-- Client hooks (issue 8, SPEC F-64, F-80…F-82).
-- A client session (Claude Code's session_id) maps to the agent its hooks act for, so every hook
-- of one session is the same agent and `huddle channel` / the git guard can find the agent working
-- in a directory. `hook_cursors` is how far each agent's pending events have been delivered into
-- its session (each event once), kept server-side so the stateless command hook needs no file.
CREATE TABLE client_sessions (
    project    TEXT COLLATE "C" NOT NULL,
    client     TEXT COLLATE "C" NOT NULL,
    session_id TEXT COLLATE "C" NOT NULL,
    agent_id   TEXT COLLATE "C" NOT NULL,
    cwd        TEXT COLLATE "C" NOT NULL DEFAULT '',
    started_at DOUBLE PRECISION NOT NULL,
    ended_at   DOUBLE PRECISION,
    PRIMARY KEY (project, client, session_id)
);
CREATE INDEX client_sessions_by_cwd ON client_sessions (project, cwd, started_at);

CREATE TABLE hook_cursors (
    project  TEXT COLLATE "C" NOT NULL,
    agent_id TEXT COLLATE "C" NOT NULL,
    cursor   BIGINT NOT NULL,
    PRIMARY KEY (project, agent_id)
);

-- The line ranges an in-flight edit will touch, when the hook could find them.
ALTER TABLE working_files ADD COLUMN ranges TEXT COLLATE "C" NOT NULL DEFAULT '[]';
