-- A serverless database's datacenter under a customer key holds one of the organization's
-- provider IDs alone (the customer trusts one provider ID per serverless database): the
-- store sets the column when it inserts such a datacenter, and the index refuses a second
-- live one with the same ID in the region. Rows from before the rule stay NULL.
ALTER TABLE datacenters ADD COLUMN serverless_identity TEXT;
CREATE UNIQUE INDEX datacenters_serverless_identity
    ON datacenters (org_id, provider, region, serverless_identity)
    WHERE serverless_identity IS NOT NULL AND status <> 'TERMINATED';
