-- One customer key's live datacenters in its organization: what a key check (POST …/check)
-- and a key event touch, without scanning every organization's datacenters.
CREATE INDEX datacenters_live_by_key ON datacenters (org_id, key_id, region)
    WHERE key_kind = 'customer' AND status <> 'TERMINATED';
