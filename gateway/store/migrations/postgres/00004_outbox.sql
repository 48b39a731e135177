-- The transactional outbox: deliveries to providers' adapters and practices'
-- Subscriptions, written in the same transaction as the change they are
-- about. seq orders them; one destination's events about one Task go out in
-- seq order.

-- +goose Up
CREATE TABLE outbox (
    seq          BIGSERIAL PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,
    destination  TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    order_key    TEXT    NOT NULL,
    task_version BIGINT  NOT NULL,
    payload      TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    attempts     BIGINT  NOT NULL DEFAULT 0,
    last_error   TEXT,
    created_at   BIGINT  NOT NULL,
    next_attempt BIGINT  NOT NULL,
    delivered_at BIGINT,
    lease_owner  TEXT,
    lease_until  BIGINT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt);
CREATE INDEX outbox_key ON outbox (destination, order_key, seq);

-- A version that deletes its resource (a Subscription): reads answer 410.
ALTER TABLE resource_versions ADD COLUMN deleted BOOLEAN NOT NULL DEFAULT FALSE;

-- +goose Down
ALTER TABLE resource_versions DROP COLUMN deleted;
DROP TABLE outbox;
