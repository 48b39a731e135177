-- The ids (jti) of the client assertions the token endpoint has accepted,
-- so that none is accepted twice, by any replica. A row is kept until its
-- assertion could no longer pass the expiry check, then purged.

-- +goose Up
CREATE TABLE oauth_jtis (
    client_id  TEXT    NOT NULL,
    jti        TEXT    NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX oauth_jtis_expires ON oauth_jtis (expires_at);

-- +goose Down
DROP TABLE oauth_jtis;
