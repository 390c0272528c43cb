-- Chats keep their members in the chat row itself: `users`/`user_managers` are blobs of 10-byte
-- uids in join order, `bots`/`bot_managers` JSON arrays of app_ids. One compact row per chat
-- instead of one row per member, so a 50-member create is one insert.
CREATE TABLE chats (
    seq           INTEGER PRIMARY KEY,
    chat_id       TEXT    NOT NULL UNIQUE,
    tenant_key    TEXT    NOT NULL,
    creator_app   TEXT    NOT NULL,
    owner         TEXT    NOT NULL,
    external      INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    settings      TEXT    NOT NULL,
    users         BLOB    NOT NULL,
    bots          TEXT    NOT NULL,
    user_managers BLOB    NOT NULL,
    bot_managers  TEXT    NOT NULL
);

-- `uuid` + owner deduplication of creates. The primary key is what guarantees one chat per key,
-- whatever the number of writers; an expired row is overwritten in place.
CREATE TABLE chat_dedup (
    tenant_key TEXT    NOT NULL,
    app_id     TEXT    NOT NULL,
    uuid       TEXT    NOT NULL,
    owner      TEXT    NOT NULL,
    chat_id    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_key, app_id, uuid, owner)
) WITHOUT ROWID;

CREATE TABLE tokens (
    token      TEXT    PRIMARY KEY,
    kind       TEXT    NOT NULL,
    app_id     TEXT    NOT NULL,
    tenant_key TEXT    NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX tokens_by_app ON tokens (app_id, tenant_key, kind, expires_at);
