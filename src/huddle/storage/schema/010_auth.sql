-- Token mode (issue 10, SPEC F-91/F-95): what a signed token cannot say about itself.
-- Revoked token ids (kept until the token would have expired anyway).
CREATE TABLE auth_revoked (
    project    TEXT NOT NULL,
    token_id   TEXT NOT NULL,
    agent_id   TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (project, token_id)
);
-- Sign-out-everywhere counter per agent: tokens issued under an older epoch are refused.
CREATE TABLE auth_epochs (
    project  TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    epoch    INTEGER NOT NULL,
    PRIMARY KEY (project, agent_id)
);
-- Refresh-token families: one per sign-in; only the newest refresh token of a family is good,
-- and presenting an older one (a stolen copy) revokes the whole family.
CREATE TABLE auth_families (
    project      TEXT NOT NULL,
    family       TEXT NOT NULL,
    agent_id     TEXT NOT NULL,
    current_jti  TEXT NOT NULL,
    revoked      INTEGER NOT NULL DEFAULT 0,
    expires_at   REAL NOT NULL,
    PRIMARY KEY (project, family)
);
-- Agent ids handed out by self-registration or `huddle token issue`: a registration secret can
-- claim a new id, never one somebody already holds.
CREATE TABLE auth_identities (
    project    TEXT NOT NULL,
    agent_id   TEXT NOT NULL,
    claimed_at REAL NOT NULL,
    PRIMARY KEY (project, agent_id)
);
