-- The keyspaces a database has beyond its initial one (databases.keyspace), as the DevOps
-- API lists them, and when its data was last used (updated at most about once a minute).

CREATE TABLE database_keyspaces (
    database_id uuid NOT NULL REFERENCES databases (id),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (database_id, name)
);

ALTER TABLE databases ADD COLUMN last_used_at timestamptz;
