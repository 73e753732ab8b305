-- Customer keys and the hash-chained audit log (SQLite).

-- At most one key per (organization, database type, provider, region). Enums are stored as
-- their text names (DbType::as_str, Provider::as_str, KeyStatus::as_str).
CREATE TABLE customer_keys (
    org_id             TEXT NOT NULL REFERENCES organizations (id),
    db_type            TEXT NOT NULL,
    provider           TEXT NOT NULL,
    region             TEXT NOT NULL,
    key_id             TEXT NOT NULL,
    provider_account   TEXT NOT NULL,
    created_at         TEXT NOT NULL,
    created_by         TEXT NOT NULL,
    status             TEXT NOT NULL,
    status_reason      TEXT,
    status_since       TEXT NOT NULL,
    last_check_at      TEXT,
    last_check_ok      INTEGER CHECK (last_check_ok IN (0, 1)),
    last_check_message TEXT,
    PRIMARY KEY (org_id, db_type, provider, region)
) STRICT, WITHOUT ROWID;

-- One chain across all organizations in seq order: hash covers prev_hash and the fields
-- (keyplane_core::audit::entry_hash). No foreign key: entries outlive whatever they name,
-- and recording must not depend on it.
CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY NOT NULL CHECK (seq > 0),
    org_id    TEXT NOT NULL,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    reason    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
) STRICT;

CREATE INDEX audit_log_by_org ON audit_log (org_id, seq);

-- Append-only.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
