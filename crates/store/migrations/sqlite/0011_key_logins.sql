-- The logins customers give keyplane with a key of a service that has no platform identity
-- (an OpenBao AppRole's role ID and secret ID), sealed under the platform's sealing key with
-- the row's (organization, provider, key) as associated data. One per key of an organization:
-- every slot registered with the key uses the login given last.
CREATE TABLE key_logins (
    org_id TEXT NOT NULL REFERENCES organizations (id),
    provider TEXT NOT NULL,
    key_id TEXT NOT NULL,
    sealed BLOB NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (org_id, provider, key_id)
);
