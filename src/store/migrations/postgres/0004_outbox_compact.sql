-- The outbox, compacted. `body` keeps only what no column holds (not `type`, `chat_id`, `at_ms`);
-- a created chat's members move to `users`, 10 bytes a uid as in `chats.users` (NULL for other
-- events). `bytes_end` is where the event ends in the outbox's running byte count, so a prune
-- to `--outbox-bytes` finds its cut by walking the oldest rows only; the counter row keeps the
-- running count (`event_seq.bytes`) next to the last seq. The rows already stored are rewritten
-- right after this script (`sql::compact_legacy_events`).
-- The index on chat_id goes: it cost every event a second B-tree insert, and the control API's
-- chat filter walks seq order within the bounded outbox instead.
ALTER TABLE events ADD COLUMN users BYTEA, ADD COLUMN bytes_end BIGINT NOT NULL DEFAULT 0;
ALTER TABLE event_seq ADD COLUMN bytes BIGINT NOT NULL DEFAULT 0;
DROP INDEX events_by_chat;
