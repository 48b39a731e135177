-- The transactional outbox: deliveries to providers' adapters and practices'
-- Subscriptions, written in the same transaction as the change they are
-- about. seq orders them; one destination's events about one Task go out in
-- seq order.

-- +goose Up
CREATE TABLE outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT    NOT NULL UNIQUE,
    destination  TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    order_key    TEXT    NOT NULL,
    task_version INTEGER NOT NULL,
    payload      TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    next_attempt INTEGER NOT NULL,
    delivered_at INTEGER,
    lease_owner  TEXT,
    lease_until  INTEGER
);
CREATE INDEX outbox_due ON outbox (status, next_attempt);
CREATE INDEX outbox_key ON outbox (destination, order_key, seq);

-- A version that deletes its resource (a Subscription): reads answer 410.
ALTER TABLE resource_versions ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE resource_versions DROP COLUMN deleted;
DROP TABLE outbox;
