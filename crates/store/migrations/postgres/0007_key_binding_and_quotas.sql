-- Organization binding of customer keys, and what the per-organization quotas count (PostgreSQL).

-- When the platform proved that the key's policy refuses every other organization's
-- encryption context (at registration, or later by the key monitor). NULL for keys
-- registered before registration proved it: the monitor checks those.
ALTER TABLE customer_keys ADD COLUMN bound_at timestamptz;
-- The key monitor's warning while the key's policy lets the platform use it for any
-- organization; NULL otherwise. Not a status: the key keeps working.
ALTER TABLE customer_keys ADD COLUMN binding_warning text;

-- Quotas count an organization's live datacenters inside the transaction that adds one.
CREATE INDEX datacenters_live_by_org ON datacenters (org_id)
    WHERE status <> 'TERMINATED';
-- ... and its live databases.
CREATE INDEX databases_live_by_org ON databases (org_id)
    WHERE status <> 'TERMINATED';
