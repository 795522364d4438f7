-- Core: events, agents, intents, threads, file activity, dependency map.
-- Every table carries `project` so one server can later serve several repositories.
-- Indexes follow the hot queries: scoring looks paths and modules up, never scans.

CREATE TABLE events (
    cursor    INTEGER PRIMARY KEY AUTOINCREMENT,
    project   TEXT NOT NULL,
    ts        REAL NOT NULL,
    kind      TEXT NOT NULL,
    actor     TEXT,
    thread_id TEXT,
    audience  TEXT NOT NULL,
    data      TEXT NOT NULL
);
CREATE INDEX events_by_thread ON events (thread_id, cursor) WHERE thread_id IS NOT NULL;
CREATE INDEX events_by_ts ON events (project, ts);

-- Who an event is addressed to: get_updates reads one agent's slice by cursor.
CREATE TABLE event_audience (
    project  TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    cursor   INTEGER NOT NULL,
    PRIMARY KEY (project, agent_id, cursor)
) WITHOUT ROWID;

CREATE TABLE agents (
    project        TEXT NOT NULL,
    agent_id       TEXT NOT NULL,
    name           TEXT NOT NULL,
    client         TEXT NOT NULL DEFAULT '',
    branch         TEXT NOT NULL DEFAULT '',
    worktree       TEXT NOT NULL DEFAULT '',
    modules        TEXT NOT NULL DEFAULT '[]',
    status         TEXT NOT NULL,            -- online | offline | deregistered
    registered_at  REAL NOT NULL,
    session_start  REAL NOT NULL,
    last_seen      REAL NOT NULL,
    current_file   TEXT,
    current_thread TEXT,
    PRIMARY KEY (project, agent_id)
);
CREATE INDEX agents_by_status ON agents (project, status, last_seen);

CREATE TABLE agent_modules (
    project  TEXT NOT NULL,
    module   TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    PRIMARY KEY (project, module, agent_id)
) WITHOUT ROWID;

CREATE TABLE intents (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    project          TEXT NOT NULL,
    agent_id         TEXT NOT NULL,
    subject          TEXT NOT NULL,
    plan             TEXT NOT NULL DEFAULT '',
    kind             TEXT NOT NULL,
    status           TEXT NOT NULL,          -- active | completed | withdrawn | expired
    created_at       REAL NOT NULL,
    expires_at       REAL NOT NULL,
    ended_at         REAL,
    end_reason       TEXT,
    thread_id        TEXT,
    branch           TEXT NOT NULL DEFAULT '',
    target_files     TEXT NOT NULL,
    depends_on_files TEXT NOT NULL,
    target_modules   TEXT NOT NULL,
    target_symbols   TEXT NOT NULL,
    verdict          TEXT NOT NULL,
    impacts          TEXT NOT NULL
);
CREATE INDEX intents_active_by_agent ON intents (project, agent_id) WHERE status = 'active';
CREATE INDEX intents_active_by_expiry ON intents (expires_at) WHERE status = 'active';

-- Paths and modules of *active* intents only (rows go when the intent ends): the scoring index.
CREATE TABLE intent_paths (
    project   TEXT NOT NULL,
    path      TEXT NOT NULL,
    role      TEXT NOT NULL,                 -- target | depends
    intent_id INTEGER NOT NULL,
    agent_id  TEXT NOT NULL,
    symbols   TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (project, path, role, intent_id)
) WITHOUT ROWID;
CREATE INDEX intent_paths_by_intent ON intent_paths (intent_id);

CREATE TABLE intent_modules (
    project   TEXT NOT NULL,
    module    TEXT NOT NULL,
    intent_id INTEGER NOT NULL,
    agent_id  TEXT NOT NULL,
    PRIMARY KEY (project, module, intent_id)
) WITHOUT ROWID;
CREATE INDEX intent_modules_by_intent ON intent_modules (intent_id);

CREATE TABLE threads (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    project       TEXT NOT NULL,
    subject       TEXT NOT NULL,
    initiator     TEXT NOT NULL,
    intent_id     INTEGER,
    status        TEXT NOT NULL,
    round         INTEGER NOT NULL DEFAULT 1,
    max_rounds    INTEGER NOT NULL,
    proposal      TEXT,                      -- JSON {summary, plan, by, round} or NULL
    deadline      REAL NOT NULL,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    ended_at      REAL,
    resolution    TEXT,
    claimed_by    TEXT,
    claimed_at    REAL,
    completed_at  REAL,
    target_files  TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX threads_by_status ON threads (project, status);
CREATE INDEX threads_active_by_deadline ON threads (deadline) WHERE status IN ('open', 'resolving');

CREATE TABLE thread_members (
    thread_id INTEGER NOT NULL,
    agent_id  TEXT NOT NULL,
    role      TEXT NOT NULL,                 -- initiator | respondent
    left_at   REAL,
    PRIMARY KEY (thread_id, agent_id)
);
CREATE INDEX thread_members_by_agent ON thread_members (agent_id, thread_id);

CREATE TABLE thread_approvals (
    thread_id INTEGER NOT NULL,
    round     INTEGER NOT NULL,
    agent_id  TEXT NOT NULL,
    ts        REAL NOT NULL,
    PRIMARY KEY (thread_id, round, agent_id)
);

CREATE TABLE thread_messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    thread_id   INTEGER NOT NULL,
    agent_id    TEXT NOT NULL,
    type        TEXT NOT NULL,
    content     TEXT NOT NULL,
    in_reply_to INTEGER,
    round       INTEGER NOT NULL,
    ts          REAL NOT NULL
);
CREATE INDEX thread_messages_by_thread ON thread_messages (thread_id, id);

CREATE TABLE file_edits (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    project  TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    path     TEXT NOT NULL,
    ts       REAL NOT NULL,
    ranges   TEXT NOT NULL DEFAULT '[]',
    symbols  TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX file_edits_by_path ON file_edits (project, path, ts);
CREATE INDEX file_edits_by_agent ON file_edits (project, agent_id, ts);
CREATE INDEX file_edits_by_ts ON file_edits (project, ts);

-- Edits in flight (start_editing … stop_editing, or until expires_at).
CREATE TABLE working_files (
    project    TEXT NOT NULL,
    path       TEXT NOT NULL,
    agent_id   TEXT NOT NULL,
    started_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (project, path, agent_id)
) WITHOUT ROWID;
CREATE INDEX working_files_by_agent ON working_files (project, agent_id);

CREATE TABLE dependency_modules (
    project    TEXT NOT NULL,
    module     TEXT NOT NULL,
    depends_on TEXT NOT NULL,                -- JSON list of module names
    paths      TEXT NOT NULL,                -- JSON list of path prefixes / globs
    PRIMARY KEY (project, module)
);
