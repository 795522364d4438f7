-- PostgreSQL twin of ../008_dashboard_windows.sql: the same tables and indexes in PostgreSQL types (BIGINT, DOUBLE PRECISION, TEXT COLLATE "C": see 001).
-- The dashboard's 24-hour charts read intents by creation time (which layers fired); without
-- this index that window would scan every intent ever announced.
CREATE INDEX intents_by_created ON intents (project, created_at);
