-- Delivery of events to apps, shared by every node on the store (src/delivery).
-- Run-time event settings per app (PUT /_larkstack/apps/{app_id}/events): the JSON of
-- `EventSettings`; a fixture's settings apply to apps without a row. A reset keeps them, a new
-- fixture removes them.
CREATE TABLE event_settings (
    app_id TEXT PRIMARY KEY,
    settings TEXT NOT NULL
);
-- The last outbox seq turned into deliveries (no row: 0).
CREATE TABLE delivery_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
-- One event for one app until it is delivered or given up (then the row goes; its attempts stay
-- listed). `state` is 'pending' (due at `due_ms`, larkstack clock) or 'in_flight' (leased by
-- `lease_owner` until `lease_until`, wall-clock ms). `bytes` is what the row weighs (the payload).
CREATE TABLE deliveries (
    event_id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    chat_id TEXT NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    committed_ms INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    due_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER
);
CREATE INDEX deliveries_due ON deliveries (state, due_ms);
CREATE INDEX deliveries_by_chat ON deliveries (app_id, chat_id, seq);
-- Every attempt, as GET /_larkstack/deliveries lists them. `id` and `bytes_before` (what every
-- earlier attempt weighed) come from `delivery_attempt_totals` (attempts and bytes ever
-- recorded), so pruning the oldest beyond the bounds is two range deletes.
CREATE TABLE delivery_attempts (
    id INTEGER PRIMARY KEY,
    bytes_before INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    app_id TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    url TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    status INTEGER,
    delivered BOOLEAN NOT NULL,
    latency_ms INTEGER NOT NULL,
    response TEXT NOT NULL,
    next_retry_ms INTEGER,
    payload TEXT NOT NULL,
    committed_ms INTEGER NOT NULL
);
CREATE INDEX delivery_attempts_by_bytes ON delivery_attempts (bytes_before);
CREATE INDEX delivery_attempts_by_event ON delivery_attempts (event_id, id);
CREATE TABLE delivery_attempt_totals (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    attempts INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
