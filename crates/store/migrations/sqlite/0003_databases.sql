-- Databases, their datacenters (one per region) and the background job queue (SQLite).
-- Enums are stored as their text names (DatabaseStatus::as_str, DbType::as_str,
-- Provider::as_str, KeyKind::as_str, JobKind::as_str).

CREATE TABLE databases (
    id             TEXT PRIMARY KEY NOT NULL,
    org_id         TEXT NOT NULL REFERENCES organizations (id),
    name           TEXT NOT NULL,
    keyspace       TEXT NOT NULL,
    db_type        TEXT NOT NULL,
    provider       TEXT NOT NULL,
    tier           TEXT NOT NULL,
    capacity_units INTEGER NOT NULL,
    status         TEXT NOT NULL,
    message        TEXT NOT NULL DEFAULT '',
    owner          TEXT NOT NULL,
    customer_keyed INTEGER NOT NULL CHECK (customer_keyed IN (0, 1)),
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    terminated_at  TEXT
) STRICT;

-- Listing pages through an organization's databases in (created_at, id) order.
CREATE INDEX databases_by_org ON databases (org_id, created_at, id);

-- ID: `<database id>-<ordinal>`. wrapped_data_key is NULL until provisioning generated it
-- and again once the datacenter is terminated (crypto-shredding).
CREATE TABLE datacenters (
    id                TEXT PRIMARY KEY NOT NULL,
    database_id       TEXT NOT NULL REFERENCES databases (id),
    org_id            TEXT NOT NULL REFERENCES organizations (id),
    ordinal           INTEGER NOT NULL CHECK (ordinal >= 0),
    provider          TEXT NOT NULL,
    region            TEXT NOT NULL,
    tier              TEXT NOT NULL,
    status            TEXT NOT NULL,
    message           TEXT NOT NULL DEFAULT '',
    key_kind          TEXT NOT NULL CHECK (key_kind IN ('customer', 'platform')),
    key_id            TEXT NOT NULL,
    provider_account  TEXT NOT NULL,
    wrapped_data_key  BLOB,
    kms_failing_since TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    terminated_at     TEXT
) STRICT;

-- A database's datacenters by ordinal.
CREATE UNIQUE INDEX datacenters_by_database ON datacenters (database_id, ordinal);
-- At most one live datacenter per region of a database.
CREATE UNIQUE INDEX datacenters_live_region ON datacenters (database_id, region)
    WHERE status <> 'TERMINATED';
-- What the key health monitor scans.
CREATE INDEX datacenters_live_customer ON datacenters (id)
    WHERE key_kind = 'customer' AND status <> 'TERMINATED';

-- state: pending, running, done or failed.
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL,
    database_id   TEXT NOT NULL REFERENCES databases (id),
    datacenter_id TEXT REFERENCES datacenters (id),
    state         TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT NOT NULL DEFAULT '',
    not_before    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;

-- claim_job: the oldest pending job that is due.
CREATE INDEX jobs_by_state ON jobs (state, not_before, id);
