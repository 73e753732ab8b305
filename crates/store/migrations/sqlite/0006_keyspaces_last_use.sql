-- The keyspaces a database has beyond its initial one (databases.keyspace), as the DevOps
-- API lists them, and when its data was last used (updated at most about once a minute).

CREATE TABLE database_keyspaces (
    database_id TEXT NOT NULL REFERENCES databases (id),
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (database_id, name)
) STRICT;

ALTER TABLE databases ADD COLUMN last_used_at TEXT;
