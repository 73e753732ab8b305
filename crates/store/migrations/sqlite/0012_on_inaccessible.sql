-- What the key monitor does when a key fails its check, as each organization chose: for the
-- organization as a whole (key_id '') or for one of its keys. 'suspend', or 'alert-only'
-- with the seconds its datacenters keep serving before they are suspended. No row: suspend.
CREATE TABLE on_inaccessible (
    org_id TEXT NOT NULL REFERENCES organizations (id),
    key_id TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('suspend', 'alert-only')),
    alert_secs INTEGER,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (org_id, key_id)
);
