-- The suspended datacenters, which every process reads once a second (its suspension sync)
-- to enforce suspensions and revokes made by any process: found without scanning the table.
CREATE INDEX datacenters_suspended ON datacenters (id) WHERE status = 'SUSPENDED';
