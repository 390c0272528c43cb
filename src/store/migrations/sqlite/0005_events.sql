-- The event outbox: every domain event, committed with its change. `seq` is the rowid (no
-- AUTOINCREMENT): the single writer makes it max(seq) + 1, so the order has no gaps even when a
-- savepoint rolls back (its rows go, and the next insert reuses their seqs).
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX events_by_chat ON events (chat_id, seq);
