-- An audit event keeps its references with it, in order, as a JSON array of
-- strings (audit_events.entities), and once more in audit_refs: a bare
-- (ref, audit_seq) key for AuditEvent?entity= searches. That is one index
-- entry per reference where audit_entities took two, plus its heap row and
-- a foreign-key check. A provider's poll page is audited with about 150
-- references, so this was most of the cost of auditing reads, and most of
-- the trail's size.

-- +goose Up
ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only;
ALTER TABLE audit_events ADD COLUMN entities TEXT NOT NULL DEFAULT '[]';
UPDATE audit_events a SET entities = e.refs
    FROM (SELECT audit_seq, json_agg(ref ORDER BY pos)::text AS refs FROM audit_entities GROUP BY audit_seq) e
    WHERE e.audit_seq = a.seq;
ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only;

CREATE TABLE audit_refs (
    ref       TEXT   NOT NULL,
    audit_seq BIGINT NOT NULL,
    PRIMARY KEY (ref, audit_seq)
);
INSERT INTO audit_refs (ref, audit_seq) SELECT ref, audit_seq FROM audit_entities;
DROP TABLE audit_entities;
CREATE TRIGGER audit_refs_append_only BEFORE UPDATE OR DELETE ON audit_refs
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();

-- +goose Down
CREATE TABLE audit_entities (
    ref       TEXT    NOT NULL,
    audit_seq BIGINT  NOT NULL REFERENCES audit_events (seq),
    pos       INTEGER NOT NULL,
    PRIMARY KEY (ref, audit_seq)
);
CREATE INDEX audit_entities_event ON audit_entities (audit_seq, pos);
INSERT INTO audit_entities (ref, audit_seq, pos)
    SELECT j.value, a.seq, j.ordinality - 1 FROM audit_events a, json_array_elements_text(a.entities::json) WITH ORDINALITY j
    ON CONFLICT DO NOTHING;
CREATE TRIGGER audit_entities_append_only BEFORE UPDATE OR DELETE ON audit_entities
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
DROP TABLE audit_refs;
ALTER TABLE audit_events DROP COLUMN entities;
