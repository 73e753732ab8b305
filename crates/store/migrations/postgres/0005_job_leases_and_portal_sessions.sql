-- Several processes on one database (PostgreSQL): jobs are leased, portal sessions are rows.

-- The replica running a job holds it until lease_until and renews it while it works; a job
-- whose lease passed is taken over by another replica (taken_over_from names the one whose
-- lease the latest claim took over).
ALTER TABLE jobs ADD COLUMN lease_owner text;
ALTER TABLE jobs ADD COLUMN lease_until timestamptz;
ALTER TABLE jobs ADD COLUMN taken_over_from text;
-- A job an older version left running has no lease: it is claimable at once.
UPDATE jobs SET lease_until = updated_at WHERE state = 'running';
-- claim_job: running jobs whose lease passed, beside the due pending ones (jobs_by_state).
CREATE INDEX jobs_by_lease ON jobs (lease_until, id) WHERE state = 'running';

-- A browser's portal session. id_hash is the SHA-256 of the random ID its cookie carries:
-- the ID itself is never stored. No token secret is stored either: a session signs in again
-- by its logins' client IDs on every request (see keyplane-app's sessions).
CREATE TABLE portal_sessions (
    id_hash     bytea PRIMARY KEY,
    -- The organization the pages act on (one of the logins; the first one when it is gone).
    current_org uuid,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);

-- Expired sessions are deleted as new ones start.
CREATE INDEX portal_sessions_by_expiry ON portal_sessions (expires_at);

-- One organization a session signed in to, with the token (by client ID) that speaks for it.
CREATE TABLE portal_session_logins (
    session_hash bytea NOT NULL REFERENCES portal_sessions (id_hash) ON DELETE CASCADE,
    org_id       uuid NOT NULL REFERENCES organizations (id),
    client_id    text NOT NULL REFERENCES tokens (client_id),
    added_at     timestamptz NOT NULL,
    PRIMARY KEY (session_hash, org_id)
);

-- Revoking a token deletes its logins.
CREATE INDEX portal_session_logins_by_token ON portal_session_logins (client_id);
