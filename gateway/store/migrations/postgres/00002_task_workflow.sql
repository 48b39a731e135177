-- The Task workflow: the link worker holding a Task (for caseload handover)
-- and whether the practice sees coded outcomes only.

-- +goose Up
ALTER TABLE resource_versions ADD COLUMN link_worker TEXT;
ALTER TABLE resource_versions ADD COLUMN codes_only BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX resource_by_link_worker ON resource_versions (type, provider, link_worker)
    WHERE superseded_seq IS NULL AND link_worker IS NOT NULL;

-- +goose Down
DROP INDEX resource_by_link_worker;
ALTER TABLE resource_versions DROP COLUMN codes_only;
ALTER TABLE resource_versions DROP COLUMN link_worker;
