-- keyplane's initial schema (PostgreSQL).

CREATE TABLE enterprises (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE organizations (
    id               uuid PRIMARY KEY,
    name             text NOT NULL,
    enterprise_id    uuid REFERENCES enterprises (id),
    -- {"aws":["us-east-2"]}: a provider absent from the object has every region unlocked.
    unlocked_regions jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL
);

CREATE INDEX organizations_by_name ON organizations (name, id);
CREATE INDEX organizations_by_enterprise ON organizations (enterprise_id, name, id);

CREATE TABLE tokens (
    client_id   text PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations (id),
    role        text NOT NULL,
    secret_hash bytea NOT NULL,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);

CREATE INDEX tokens_by_org ON tokens (org_id, created_at);

CREATE TABLE account_assignments (
    org_id     uuid NOT NULL REFERENCES organizations (id),
    provider   text NOT NULL,
    account_id text NOT NULL,
    ordinal    bigint NOT NULL CHECK (ordinal >= 0),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, provider, ordinal),
    UNIQUE (org_id, provider, account_id)
);

CREATE INDEX account_assignments_by_account ON account_assignments (provider, account_id);

CREATE TABLE settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);
