-- PostgreSQL twin of ../004_analysis.sql: the same tables and indexes in PostgreSQL types (BIGINT, DOUBLE PRECISION, TEXT COLLATE "C": see 001).
-- Code intelligence (SPEC F-15 … F-17): tables written by the background analysis loops and
-- read by index inside the announce transaction. Nothing here is written on the request path.

-- Definitions per file, derived from the file's contents with tree-sitter. `symbol_files` says
-- which version of the file they describe (mtime and size), so unchanged files are not reparsed.
CREATE TABLE symbol_files (
    project    TEXT COLLATE "C" NOT NULL,
    path       TEXT COLLATE "C" NOT NULL,
    mtime_ns   BIGINT NOT NULL,
    size       BIGINT NOT NULL,
    language   TEXT COLLATE "C" NOT NULL,              -- '' when no grammar parses it (line-range rule)
    indexed_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (project, path)
);

CREATE TABLE symbol_defs (
    project    TEXT COLLATE "C" NOT NULL,
    path       TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,              -- qualified: Greeter.hello
    kind       TEXT COLLATE "C" NOT NULL,
    start_line BIGINT NOT NULL,
    end_line   BIGINT NOT NULL
);
CREATE INDEX symbol_defs_by_path ON symbol_defs (project, path, start_line);

-- Git co-change (layer 4): for file A, how many indexed commits touched it, and for each B how
-- many of those also touched B. Only pairs with the minimum support and P(B|A) > 0.2 are kept.
CREATE TABLE cochange (
    project  TEXT COLLATE "C" NOT NULL,
    path_a   TEXT COLLATE "C" NOT NULL,
    path_b   TEXT COLLATE "C" NOT NULL,
    together BIGINT NOT NULL,
    commits  BIGINT NOT NULL,             -- commits touching path_a
    PRIMARY KEY (project, path_a, path_b)
);

-- Predicted merge conflicts (F-17) between two agents' heads or working trees (agent_a < agent_b).
CREATE TABLE merge_conflicts (
    project     TEXT COLLATE "C" NOT NULL,
    agent_a     TEXT COLLATE "C" NOT NULL,
    agent_b     TEXT COLLATE "C" NOT NULL,
    files       TEXT COLLATE "C" NOT NULL,             -- JSON list of conflicted paths
    hunks       TEXT COLLATE "C" NOT NULL,             -- JSON list of {file, line, ours, theirs}
    fingerprint TEXT COLLATE "C" NOT NULL,             -- what was reported, so a conflict raises one thread
    thread_id   TEXT COLLATE "C",
    checked_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (project, agent_a, agent_b)
);
CREATE INDEX merge_conflicts_by_b ON merge_conflicts (project, agent_b);

-- Layer 5 looks agents up by branch, and live git operations by branch.
CREATE INDEX agents_by_branch ON agents (project, branch) WHERE branch != '';
CREATE INDEX intents_active_git ON intents (project, branch) WHERE status = 'active' AND kind LIKE 'git_%';

-- Who set the dependency map: `hand` (set_dependency_map, `huddle deps scan --write`) or `scan`
-- (derived from imports in the background). A scan never replaces a map set by hand.
CREATE TABLE dependency_map_source (
    project    TEXT COLLATE "C" PRIMARY KEY,
    source     TEXT COLLATE "C" NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
-- Maps set before this table existed were set by hand.
INSERT INTO dependency_map_source (project, source, updated_at)
    SELECT DISTINCT project, 'hand', 0 FROM dependency_modules;
