-- Chat lifecycle and messages: searchable columns, the bots → chats index, p2p chats, messages.
ALTER TABLE chats ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE chats ADD COLUMN chat_type TEXT NOT NULL DEFAULT 'private';
ALTER TABLE chats ADD COLUMN chat_mode TEXT NOT NULL DEFAULT 'group';
ALTER TABLE chats ADD COLUMN last_active_at INTEGER NOT NULL DEFAULT 0;
-- Join keys of `users` (ms × 1000 + position in the joining call), 8 bytes little-endian each;
-- empty = everyone joined at creation.
ALTER TABLE chats ADD COLUMN user_joined BLOB NOT NULL DEFAULT x'';
UPDATE chats SET name = json_extract(settings, '$.name'),
                 chat_type = coalesce(json_extract(settings, '$.chat_type'), 'private'),
                 chat_mode = coalesce(json_extract(settings, '$.chat_mode'), 'group'),
                 last_active_at = created_at;
-- Public chats by name (uniqueness on update, search); private chats stay out of it.
CREATE INDEX chats_public_by_name ON chats (tenant_key, name) WHERE chat_type = 'public';

-- Which chats a bot is in (list/search for tenant tokens). Kept in step with chats.bots.
CREATE TABLE chat_bots (
    app_id   TEXT    NOT NULL,
    chat_seq INTEGER NOT NULL,
    PRIMARY KEY (app_id, chat_seq)
) WITHOUT ROWID;
INSERT INTO chat_bots (app_id, chat_seq) SELECT j.value, c.seq FROM chats c, json_each(c.bots) j;

-- One p2p chat per (bot, user).
CREATE TABLE p2p_chats (
    app_id  TEXT NOT NULL,
    uid     TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    PRIMARY KEY (app_id, uid)
) WITHOUT ROWID;

CREATE TABLE messages (
    seq        INTEGER PRIMARY KEY,
    message_id TEXT    NOT NULL UNIQUE,
    chat_id    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    body       TEXT    NOT NULL
);
CREATE INDEX messages_by_chat ON messages (chat_id, created_at, seq);

-- `uuid` dedup of message sends (1 hour), same scheme as chat_dedup.
CREATE TABLE message_dedup (
    app_id     TEXT    NOT NULL,
    uuid       TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, uuid)
) WITHOUT ROWID;
