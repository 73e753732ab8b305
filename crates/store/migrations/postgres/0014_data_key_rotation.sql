-- Data-key rotation: the next data key, wrapped under the datacenter's key, recorded before
-- the file is re-encrypted under it and promoted to the key of record once the file is (so
-- after a crash the file opens under exactly one of the two), and when the data key of
-- record was last rotated.
ALTER TABLE datacenters ADD COLUMN pending_wrapped_data_key BYTEA;
ALTER TABLE datacenters ADD COLUMN data_key_rotated_at TIMESTAMPTZ;
