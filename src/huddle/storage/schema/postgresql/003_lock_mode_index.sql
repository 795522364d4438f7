-- PostgreSQL twin of ../003_lock_mode_index.sql: the same tables and indexes in PostgreSQL types (BIGINT, DOUBLE PRECISION, TEXT COLLATE "C": see 001).
-- Scoring layer L asks "does anyone else hold an exclusive lock right now?" on every announce;
-- this index answers it without touching the lock rows, so the glob matching only runs when needed.
CREATE INDEX locks_by_mode ON locks (project, mode, expires_at);
