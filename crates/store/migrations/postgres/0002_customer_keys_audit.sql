-- Customer keys and the hash-chained audit log (PostgreSQL).

-- At most one key per (organization, database type, provider, region). Enums are stored as
-- their text names (DbType::as_str, Provider::as_str, KeyStatus::as_str).
CREATE TABLE customer_keys (
    org_id             uuid NOT NULL REFERENCES organizations (id),
    db_type            text NOT NULL,
    provider           text NOT NULL,
    region             text NOT NULL,
    key_id             text NOT NULL,
    provider_account   text NOT NULL,
    created_at         timestamptz NOT NULL,
    created_by         text NOT NULL,
    status             text NOT NULL,
    status_reason      text,
    status_since       timestamptz NOT NULL,
    last_check_at      timestamptz,
    last_check_ok      boolean,
    last_check_message text,
    PRIMARY KEY (org_id, db_type, provider, region)
);

-- One chain across all organizations in seq order: hash covers prev_hash and the fields
-- (keyplane_core::audit::entry_hash). No foreign key: entries outlive whatever they name,
-- and recording must not depend on it.
CREATE TABLE audit_log (
    seq       bigint PRIMARY KEY CHECK (seq > 0),
    org_id    uuid NOT NULL,
    at        timestamptz NOT NULL,
    actor     text NOT NULL,
    action    text NOT NULL,
    target    text NOT NULL,
    outcome   text NOT NULL,
    reason    text NOT NULL,
    prev_hash text NOT NULL,
    hash      text NOT NULL
);

CREATE INDEX audit_log_by_org ON audit_log (org_id, seq);

-- Append-only.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;

CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
