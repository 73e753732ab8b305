-- Keys whose service reports an automatic rotation past due, with the key monitor's reason
-- and since when: one row per (organization, key) while it lasts, so the alert is raised once
-- however many processes read the key's rotation facts.
CREATE TABLE key_rotation_overdue (
    org_id TEXT NOT NULL REFERENCES organizations (id),
    key_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    since TEXT NOT NULL,
    PRIMARY KEY (org_id, key_id)
);
