-- PostgreSQL twin of ../012_audience_groups.sql.
-- Large audiences stored once (issue 9): an event addressed to many agents (a crowd on one module)
-- used to write one event_audience row per addressee, so one announce into 1,000 agents wrote a
-- thousand index entries. Now such an audience is a *group*: its members are written once, the
-- first time that exact set of agents is addressed, and every event addressed to it writes a single
-- event_audience row whose agent_id is the group id ('#' and a hash of the sorted member list,
-- storage/base.py; no agent id starts with '#'). Small audiences keep one row per agent, as do the
-- events written before this migration: an agent's slice is its own rows, the '*' rows and the rows
-- of its groups.
CREATE TABLE audience_groups (
    project  TEXT COLLATE "C" NOT NULL,
    group_id TEXT COLLATE "C" NOT NULL,
    members  BIGINT NOT NULL,
    PRIMARY KEY (project, group_id)
);

-- Keyed by agent first: a reader looks up the groups it belongs to.
CREATE TABLE audience_members (
    project  TEXT COLLATE "C" NOT NULL,
    agent_id TEXT COLLATE "C" NOT NULL,
    group_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (project, agent_id, group_id)
);

-- Which agents are online, for scoring a crowd (service/intents.py _online): the agent id rides in
-- the index, so the range can be read from the index alone.
DROP INDEX agents_by_status;
CREATE INDEX agents_by_status ON agents (project, status, last_seen, agent_id);

-- Leases due to expire, looked up on every acquire and release (service/lock_store.py expire_due):
-- by project first, so the lookup is one range of the project's due leases.
DROP INDEX locks_by_expiry;
CREATE INDEX locks_by_expiry ON locks (project, expires_at);
