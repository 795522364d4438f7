-- Coordination primitives: leases (locks), messages, shared context, the task board, worker slots.
-- Hot lookups are indexed: lock overlap candidates by anchor, expiry by time, unread by recipient,
-- the best available task by (priority, seq).

-- Held locks. One row per (agent, path); a re-acquire by the same agent renews or changes mode.
-- `anchor` is the literal, segment-aligned prefix of every file the path covers (domain/locks.py):
-- overlap candidates are the rows whose anchor is a prefix of mine, or has mine as a prefix.
CREATE TABLE locks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    project     TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    path        TEXT NOT NULL,
    literal     INTEGER NOT NULL DEFAULT 0,   -- 1: glob characters in path are plain characters
    kind        TEXT NOT NULL,                -- file | dir | glob
    anchor      TEXT NOT NULL,
    mode        TEXT NOT NULL,                -- exclusive | shared | intent
    token       INTEGER NOT NULL,             -- fencing token of this grant
    ttl_s       REAL NOT NULL,
    acquired_at REAL NOT NULL,
    renewed_at  REAL NOT NULL,
    expires_at  REAL NOT NULL,
    waiter_id   INTEGER,                      -- the queued request this grant came from, if any
    UNIQUE (project, agent_id, path)
);
CREATE INDEX locks_by_anchor ON locks (project, anchor);
CREATE INDEX locks_by_expiry ON locks (expires_at);
CREATE INDEX locks_by_waiter ON locks (waiter_id) WHERE waiter_id IS NOT NULL;

-- Queued requests (acquire_lock with wait_s), granted first come first served. `instance` is
-- the server process that holds the caller's connection: a restarted server drops the rest.
CREATE TABLE lock_waiters (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    project    TEXT NOT NULL,
    agent_id   TEXT NOT NULL,
    path       TEXT NOT NULL,
    literal    INTEGER NOT NULL DEFAULT 0,
    kind       TEXT NOT NULL,
    anchor     TEXT NOT NULL,
    mode       TEXT NOT NULL,
    ttl_s      REAL NOT NULL,
    created_at REAL NOT NULL,
    deadline   REAL NOT NULL,
    instance   TEXT NOT NULL
);
CREATE INDEX lock_waiters_by_project ON lock_waiters (project, id);
CREATE INDEX lock_waiters_by_deadline ON lock_waiters (deadline);

-- One counter per project: fencing tokens increase across every path and every restart, so a
-- token for src/ and a later one for src/a.py compare correctly too.
CREATE TABLE lock_counters (
    project    TEXT PRIMARY KEY,
    last_token INTEGER NOT NULL
);

CREATE TABLE messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    project    TEXT NOT NULL,
    from_agent TEXT NOT NULL,
    to_agent   TEXT,                          -- NULL: broadcast
    channel    TEXT NOT NULL,
    priority   TEXT NOT NULL,
    urgency    INTEGER NOT NULL,              -- low 0 … urgent 3, for ordering
    content    TEXT NOT NULL,
    thread_id  TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX messages_by_sender ON messages (project, from_agent, id);

-- One row per recipient (a broadcast fans out to every agent registered when it was sent), so
-- "my unread messages" is an index range no matter how much history there is.
CREATE TABLE message_inbox (
    project    TEXT NOT NULL,
    agent_id   TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    read_at    REAL,
    PRIMARY KEY (project, agent_id, message_id)
);
CREATE INDEX message_inbox_unread ON message_inbox (project, agent_id, message_id) WHERE read_at IS NULL;

CREATE TABLE shared_context (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    project    TEXT NOT NULL,
    agent_id   TEXT NOT NULL,
    type       TEXT NOT NULL,                 -- decision | discovery | convention | blocker | note
    content    TEXT NOT NULL,
    tags       TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL
);
CREATE INDEX shared_context_by_type ON shared_context (project, type, id);

CREATE TABLE shared_context_tags (
    project    TEXT NOT NULL,
    tag        TEXT NOT NULL,
    context_id INTEGER NOT NULL,
    PRIMARY KEY (project, tag, context_id)
);
CREATE INDEX shared_context_tags_by_entry ON shared_context_tags (context_id);

-- Full-text index of shared context (SQLite FTS5; rowid = shared_context.id). Only
-- service/shared_context.py's FullText touches it, so another backend can swap in tsvector.
CREATE VIRTUAL TABLE shared_context_fts USING fts5(content, tags, tokenize = 'unicode61 remove_diacritics 2');

CREATE TABLE tasks (
    project     TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    seq         INTEGER NOT NULL,             -- insertion order: "oldest first" among equal priorities
    description TEXT NOT NULL,
    priority    INTEGER NOT NULL DEFAULT 0,
    payload     TEXT,                         -- JSON or NULL
    status      TEXT NOT NULL,                -- pending | claimed | in_progress | done | failed
    blocked     INTEGER NOT NULL DEFAULT 0,   -- dependencies not done yet
    claimed_by  TEXT,
    claimed_at  REAL,
    finished_at REAL,
    output      TEXT,
    error       TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_by  TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (project, task_id)
);
CREATE INDEX tasks_available ON tasks (project, priority DESC, seq) WHERE status = 'pending' AND blocked = 0;
CREATE INDEX tasks_by_status ON tasks (project, status, seq);
CREATE INDEX tasks_by_claimer ON tasks (project, claimed_by) WHERE claimed_by IS NOT NULL;
CREATE INDEX tasks_by_seq ON tasks (project, seq);

CREATE TABLE task_deps (
    project    TEXT NOT NULL,
    task_id    TEXT NOT NULL,
    depends_on TEXT NOT NULL,
    PRIMARY KEY (project, task_id, depends_on)
);
CREATE INDEX task_deps_reverse ON task_deps (project, depends_on);

-- Only claimed slots have a row; the number of slots is the worker_slots setting.
CREATE TABLE worker_slots (
    project    TEXT NOT NULL,
    slot       INTEGER NOT NULL,
    agent_id   TEXT NOT NULL,
    claimed_at REAL NOT NULL,
    PRIMARY KEY (project, slot),
    UNIQUE (project, agent_id)
);
