-- The datacenters terminated lately, which every process reads at its suspension sync to drop
-- what it still holds of them (an open file, its data key): found without scanning the table.
CREATE INDEX datacenters_terminated ON datacenters (terminated_at) WHERE status = 'TERMINATED';
