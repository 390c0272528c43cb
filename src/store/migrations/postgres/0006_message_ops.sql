-- Message operations (issue #14): reactions and read receipts. Replies, edits, card updates and
-- recalls change the message's JSON body in `messages` (no new column).
--
-- Bounds: a message holds at most one reaction per (operator, emoji type): at most the chat's
-- members (5000 users + bots) times Feishu's emoji types (185). A read receipt is one row per
-- (message, reader); one "user reads chat" writes at most 500 (the newest bot messages of the
-- last 7 days), and only bots' messages get receipts.
CREATE TABLE reactions (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reaction_id TEXT NOT NULL UNIQUE,
    message_id  TEXT NOT NULL,
    operator    TEXT NOT NULL,
    emoji_type  TEXT NOT NULL,
    body        TEXT NOT NULL,
    UNIQUE (message_id, operator, emoji_type)
);
CREATE INDEX reactions_by_message ON reactions (message_id, seq);

CREATE TABLE message_reads (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id TEXT NOT NULL,
    uid        TEXT NOT NULL,
    read_at    BIGINT NOT NULL,
    UNIQUE (message_id, uid)
);
CREATE INDEX message_reads_by_message ON message_reads (message_id, seq);
