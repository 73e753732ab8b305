-- keyplane's initial schema (SQLite). Ids are hyphenated UUID text; timestamps are UTC
-- RFC 3339 text with millisecond precision (fixed width, so they sort as text).

CREATE TABLE enterprises (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;

CREATE TABLE organizations (
    id               TEXT PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL,
    enterprise_id    TEXT REFERENCES enterprises (id),
    -- {"aws":["us-east-2"]}: a provider absent from the object has every region unlocked.
    unlocked_regions TEXT NOT NULL DEFAULT '{}',
    created_at       TEXT NOT NULL
) STRICT;

CREATE INDEX organizations_by_name ON organizations (name, id);
CREATE INDEX organizations_by_enterprise ON organizations (enterprise_id, name, id);

CREATE TABLE tokens (
    client_id   TEXT PRIMARY KEY NOT NULL,
    org_id      TEXT NOT NULL REFERENCES organizations (id),
    role        TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
) STRICT, WITHOUT ROWID;

CREATE INDEX tokens_by_org ON tokens (org_id, created_at);

CREATE TABLE account_assignments (
    org_id     TEXT NOT NULL REFERENCES organizations (id),
    provider   TEXT NOT NULL,
    account_id TEXT NOT NULL,
    ordinal    INTEGER NOT NULL CHECK (ordinal >= 0),
    created_at TEXT NOT NULL,
    PRIMARY KEY (org_id, provider, ordinal),
    UNIQUE (org_id, provider, account_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX account_assignments_by_account ON account_assignments (provider, account_id);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT, WITHOUT ROWID;
