-- Resources, one row per version. The newest version of a resource has
-- superseded_seq NULL; an older one names the change that replaced it, so a
-- search can see the data as it was at any change (the paging snapshot).
-- Times are microseconds since the Unix epoch, UTC, in both dialects.

-- +goose Up
-- change_clock orders every write: writers lock it first, take the next
-- sequence numbers and a time later than the last, and store both back.
CREATE TABLE change_clock (
    id           SMALLINT PRIMARY KEY CHECK (id = 1),
    seq          BIGINT  NOT NULL,
    last_updated BIGINT  NOT NULL
);
INSERT INTO change_clock (id, seq, last_updated) VALUES (1, 0, 0);

CREATE TABLE resource_versions (
    seq             BIGINT  PRIMARY KEY,
    type            TEXT    NOT NULL,
    id              TEXT    NOT NULL,
    version         BIGINT  NOT NULL,
    last_updated    BIGINT  NOT NULL,
    superseded_seq  BIGINT,
    practice        TEXT,
    provider        TEXT,
    patient_id      TEXT,
    referral_id     TEXT,
    status          TEXT,
    business_status TEXT,
    key_system      TEXT,
    key_value       TEXT,
    authored        BIGINT,
    modified        BIGINT,
    content_hash    TEXT,
    body            TEXT    NOT NULL,
    UNIQUE (type, id, version)
);
CREATE UNIQUE INDEX resource_current ON resource_versions (type, id) WHERE superseded_seq IS NULL;
-- The practice's natural key (referral identifier, NHS number) is unique among
-- current versions: this, not a search before insert, makes retries safe.
CREATE UNIQUE INDEX resource_natural_key ON resource_versions (type, practice, key_system, key_value)
    WHERE superseded_seq IS NULL AND key_value IS NOT NULL;
CREATE INDEX resource_by_type     ON resource_versions (type, seq);
CREATE INDEX resource_by_provider ON resource_versions (type, provider, seq);
CREATE INDEX resource_by_practice ON resource_versions (type, practice, seq);
CREATE INDEX resource_by_patient  ON resource_versions (patient_id, type, seq);
CREATE INDEX resource_by_referral ON resource_versions (referral_id, type, seq);

-- Every identifier of every version, for identifier search.
CREATE TABLE resource_identifiers (
    seq    BIGINT  NOT NULL REFERENCES resource_versions (seq),
    system TEXT    NOT NULL,
    value  TEXT    NOT NULL,
    PRIMARY KEY (seq, system, value)
);
CREATE INDEX resource_identifiers_value ON resource_identifiers (value, system);

-- Which organisations may read a resource (all its versions). Every read and
-- search joins it: tenancy is in the query.
CREATE TABLE resource_access (
    org  TEXT NOT NULL,
    type TEXT NOT NULL,
    id   TEXT NOT NULL,
    PRIMARY KEY (org, type, id)
);

-- +goose Down
DROP TABLE resource_access;
DROP TABLE resource_identifiers;
DROP TABLE resource_versions;
DROP TABLE change_clock;
