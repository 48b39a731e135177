-- PROMs and reports: token search beyond identifiers (Observation codes),
-- and the milestones of each Task that the PROM schedule and the reports
-- read (kept by the gateway on every version).

-- +goose Up
CREATE TABLE resource_tokens (
    seq    BIGINT  NOT NULL REFERENCES resource_versions (seq),
    param  TEXT    NOT NULL,
    system TEXT    NOT NULL,
    value  TEXT    NOT NULL,
    PRIMARY KEY (seq, param, system, value)
);
INSERT INTO resource_tokens (seq, param, system, value)
    SELECT seq, 'identifier', system, value FROM resource_identifiers;
DROP TABLE resource_identifiers;
CREATE INDEX resource_tokens_value ON resource_tokens (param, value, system);

ALTER TABLE resource_versions ADD COLUMN status_reason TEXT;
ALTER TABLE resource_versions ADD COLUMN accepted_at BIGINT;
ALTER TABLE resource_versions ADD COLUMN first_contact_at BIGINT;
ALTER TABLE resource_versions ADD COLUMN baseline_at BIGINT;
ALTER TABLE resource_versions ADD COLUMN proms_done INTEGER NOT NULL DEFAULT 0;
ALTER TABLE resource_versions ADD COLUMN prom_due BIGINT;
ALTER TABLE resource_versions ADD COLUMN questionnaire TEXT;
ALTER TABLE resource_versions ADD COLUMN score DOUBLE PRECISION;
CREATE INDEX resource_prom_due ON resource_versions (prom_due)
    WHERE superseded_seq IS NULL AND prom_due IS NOT NULL;
CREATE INDEX resource_by_questionnaire ON resource_versions (type, questionnaire, seq);

-- +goose Down
DROP INDEX resource_by_questionnaire;
DROP INDEX resource_prom_due;
ALTER TABLE resource_versions DROP COLUMN score;
ALTER TABLE resource_versions DROP COLUMN questionnaire;
ALTER TABLE resource_versions DROP COLUMN prom_due;
ALTER TABLE resource_versions DROP COLUMN proms_done;
ALTER TABLE resource_versions DROP COLUMN baseline_at;
ALTER TABLE resource_versions DROP COLUMN first_contact_at;
ALTER TABLE resource_versions DROP COLUMN accepted_at;
ALTER TABLE resource_versions DROP COLUMN status_reason;
CREATE TABLE resource_identifiers (
    seq    BIGINT  NOT NULL REFERENCES resource_versions (seq),
    system TEXT    NOT NULL,
    value  TEXT    NOT NULL,
    PRIMARY KEY (seq, system, value)
);
INSERT INTO resource_identifiers (seq, system, value)
    SELECT seq, system, value FROM resource_tokens WHERE param = 'identifier';
DROP TABLE resource_tokens;
CREATE INDEX resource_identifiers_value ON resource_identifiers (value, system);
