-- PostgreSQL twin of ../010_auth.sql.
-- Token mode (issue 10, SPEC F-91/F-95): what a signed token cannot say about itself.
-- Revoked token ids (kept until the token would have expired anyway).
CREATE TABLE auth_revoked (
    project    TEXT COLLATE "C" NOT NULL,
    token_id   TEXT COLLATE "C" NOT NULL,
    agent_id   TEXT COLLATE "C" NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (project, token_id)
);
-- Sign-out-everywhere counter per agent: tokens issued under an older epoch are refused.
CREATE TABLE auth_epochs (
    project  TEXT COLLATE "C" NOT NULL,
    agent_id TEXT COLLATE "C" NOT NULL,
    epoch    BIGINT NOT NULL,
    PRIMARY KEY (project, agent_id)
);
-- Refresh-token families: one per sign-in; only the newest refresh token of a family is good,
-- and presenting an older one (a stolen copy) revokes the whole family.
CREATE TABLE auth_families (
    project      TEXT COLLATE "C" NOT NULL,
    family       TEXT COLLATE "C" NOT NULL,
    agent_id     TEXT COLLATE "C" NOT NULL,
    current_jti  TEXT COLLATE "C" NOT NULL,
    revoked      BIGINT NOT NULL DEFAULT 0,
    expires_at   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (project, family)
);
-- Agent ids handed out by self-registration or `huddle token issue`: a registration secret can
-- claim a new id, never one somebody already holds.
CREATE TABLE auth_identities (
    project    TEXT COLLATE "C" NOT NULL,
    agent_id   TEXT COLLATE "C" NOT NULL,
    claimed_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (project, agent_id)
);
