-- Databases, their datacenters (one per region) and the background job queue (PostgreSQL).
-- Enums are stored as their text names (DatabaseStatus::as_str, DbType::as_str,
-- Provider::as_str, KeyKind::as_str, JobKind::as_str).

CREATE TABLE databases (
    id             uuid PRIMARY KEY,
    org_id         uuid NOT NULL REFERENCES organizations (id),
    name           text NOT NULL,
    keyspace       text NOT NULL,
    db_type        text NOT NULL,
    provider       text NOT NULL,
    tier           text NOT NULL,
    capacity_units integer NOT NULL,
    status         text NOT NULL,
    message        text NOT NULL DEFAULT '',
    owner          text NOT NULL,
    customer_keyed boolean NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    terminated_at  timestamptz
);

-- Listing pages through an organization's databases in (created_at, id) order.
CREATE INDEX databases_by_org ON databases (org_id, created_at, id);

-- ID: `<database id>-<ordinal>`. wrapped_data_key is NULL until provisioning generated it
-- and again once the datacenter is terminated (crypto-shredding).
CREATE TABLE datacenters (
    id                text PRIMARY KEY,
    database_id       uuid NOT NULL REFERENCES databases (id),
    org_id            uuid NOT NULL REFERENCES organizations (id),
    ordinal           integer NOT NULL CHECK (ordinal >= 0),
    provider          text NOT NULL,
    region            text NOT NULL,
    tier              text NOT NULL,
    status            text NOT NULL,
    message           text NOT NULL DEFAULT '',
    key_kind          text NOT NULL CHECK (key_kind IN ('customer', 'platform')),
    key_id            text NOT NULL,
    provider_account  text NOT NULL,
    wrapped_data_key  bytea,
    kms_failing_since timestamptz,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    terminated_at     timestamptz
);

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
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL,
    database_id   uuid NOT NULL REFERENCES databases (id),
    datacenter_id text REFERENCES datacenters (id),
    state         text NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text NOT NULL DEFAULT '',
    not_before    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- claim_job: the oldest pending job that is due.
CREATE INDEX jobs_by_state ON jobs (state, not_before, id);
