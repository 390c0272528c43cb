-- The event outbox: every domain event, committed with its change. A sequence would leave gaps
-- (rolled-back transactions) and commit out of order, so `seq` comes from a one-row counter that
-- each event-producing transaction bumps: seq order is commit order, at the cost of serialising
-- those commits on the counter row.
CREATE TABLE events (
    seq BIGINT PRIMARY KEY,
    type TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX events_by_chat ON events (chat_id, seq);
CREATE TABLE event_seq (last BIGINT NOT NULL);
INSERT INTO event_seq (last) VALUES (0);
