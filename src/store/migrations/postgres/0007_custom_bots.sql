-- A group's custom bots (domain::custom_bots::CustomBot as JSON in `body`), one row per webhook
-- token; at most MAX_CUSTOM_BOTS_PER_CHAT per chat, counted under the chat's lock.
CREATE TABLE custom_bots (
    token TEXT PRIMARY KEY,
    bot_id TEXT NOT NULL UNIQUE,
    chat_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX custom_bots_by_chat ON custom_bots (chat_id, created_at);
