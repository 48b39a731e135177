-- An audit event keeps its references with it, in order, as a JSON array of
-- strings (audit_events.entities), and once more in audit_refs: a bare
-- (ref, audit_seq) key for AuditEvent?entity= searches. That is one B-tree
-- entry per reference where audit_entities took three (its rowid table, its
-- key and its index by event) and a foreign-key probe. A provider's poll
-- page is audited with about 150 references, so this was most of the cost
-- of auditing reads, and most of the trail's size.

-- +goose Up
DROP TRIGGER audit_events_no_update;
ALTER TABLE audit_events ADD COLUMN entities TEXT NOT NULL DEFAULT '[]';
UPDATE audit_events SET entities = (
    SELECT json_group_array(ref) FROM (
        SELECT ref FROM audit_entities e WHERE e.audit_seq = audit_events.seq ORDER BY pos))
WHERE seq IN (SELECT audit_seq FROM audit_entities);
-- +goose StatementBegin
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
-- +goose StatementEnd

CREATE TABLE audit_refs (
    ref       TEXT    NOT NULL,
    audit_seq INTEGER NOT NULL,
    PRIMARY KEY (ref, audit_seq)
) WITHOUT ROWID;
INSERT INTO audit_refs (ref, audit_seq) SELECT ref, audit_seq FROM audit_entities;
DROP TRIGGER audit_entities_no_update;
DROP TRIGGER audit_entities_no_delete;
DROP TABLE audit_entities;
-- +goose StatementBegin
CREATE TRIGGER audit_refs_no_update BEFORE UPDATE ON audit_refs
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER audit_refs_no_delete BEFORE DELETE ON audit_refs
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
-- +goose StatementEnd

-- +goose Down
CREATE TABLE audit_entities (
    ref       TEXT    NOT NULL,
    audit_seq INTEGER NOT NULL REFERENCES audit_events (seq),
    pos       INTEGER NOT NULL,
    PRIMARY KEY (ref, audit_seq)
);
CREATE INDEX audit_entities_event ON audit_entities (audit_seq, pos);
INSERT OR IGNORE INTO audit_entities (ref, audit_seq, pos)
    SELECT j.value, a.seq, j.key FROM audit_events a, json_each(a.entities) j;
-- +goose StatementBegin
CREATE TRIGGER audit_entities_no_update BEFORE UPDATE ON audit_entities
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER audit_entities_no_delete BEFORE DELETE ON audit_entities
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
-- +goose StatementEnd
DROP TRIGGER audit_refs_no_update;
DROP TRIGGER audit_refs_no_delete;
DROP TABLE audit_refs;
DROP TRIGGER audit_events_no_update;
ALTER TABLE audit_events DROP COLUMN entities;
-- +goose StatementBegin
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
-- +goose StatementEnd
