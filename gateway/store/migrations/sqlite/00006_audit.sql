-- The audit trail: one row per access to patient data or refused access
-- (who, what, when, outcome, from where), never patient data itself.
-- Resources appear in audit_entities as references (Type/id), keyed for
-- AuditEvent?entity= searches. seq orders the trail in commit order.
-- The gateway only ever inserts: triggers refuse changes and deletions, so
-- an operator who prunes old rows must drop them on purpose first.

-- +goose Up
CREATE TABLE audit_events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL UNIQUE,
    recorded      INTEGER NOT NULL,
    client_id     TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    org           TEXT    NOT NULL,
    action        TEXT    NOT NULL,
    resource_type TEXT    NOT NULL,
    outcome       TEXT    NOT NULL,
    source_ip     TEXT    NOT NULL,
    request_id    TEXT    NOT NULL
);
CREATE INDEX audit_events_recorded ON audit_events (recorded, seq);
CREATE INDEX audit_events_client ON audit_events (client_id, seq);
CREATE INDEX audit_events_org ON audit_events (org, seq);

CREATE TABLE audit_entities (
    ref       TEXT    NOT NULL,
    audit_seq INTEGER NOT NULL REFERENCES audit_events (seq),
    pos       INTEGER NOT NULL,
    PRIMARY KEY (ref, audit_seq)
);
CREATE INDEX audit_entities_event ON audit_entities (audit_seq, pos);

-- +goose StatementBegin
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER audit_entities_no_update BEFORE UPDATE ON audit_entities
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE TRIGGER audit_entities_no_delete BEFORE DELETE ON audit_entities
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
-- +goose StatementEnd

-- +goose Down
DROP TABLE audit_entities;
DROP TABLE audit_events;
