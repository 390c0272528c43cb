-- The whole schema for PostgreSQL, laid out as SQLite's after its migrations 0001–0003: one row
-- per chat with members as blobs (see src/store/codec.rs), the bots → chats index, dedup keys
-- whose primary keys guarantee one chat (or message) per key across every node.
CREATE TABLE chats (
    seq            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chat_id        TEXT    NOT NULL UNIQUE,
    tenant_key     TEXT    NOT NULL,
    creator_app    TEXT    NOT NULL,
    owner          TEXT    NOT NULL,
    external       BOOLEAN NOT NULL,
    status         TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    settings       TEXT    NOT NULL,
    users          BYTEA   NOT NULL,
    bots           TEXT    NOT NULL,
    user_managers  BYTEA   NOT NULL,
    bot_managers   TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    chat_type      TEXT    NOT NULL,
    chat_mode      TEXT    NOT NULL,
    last_active_at BIGINT  NOT NULL,
    user_joined    BYTEA   NOT NULL
);
CREATE INDEX chats_public_by_name ON chats (tenant_key, name) WHERE chat_type = 'public';
CREATE INDEX chats_by_tenant_active ON chats (tenant_key, last_active_at DESC, seq DESC);

CREATE TABLE chat_bots (
    app_id   TEXT   NOT NULL,
    chat_seq BIGINT NOT NULL,
    PRIMARY KEY (app_id, chat_seq)
);

CREATE TABLE chat_dedup (
    tenant_key TEXT   NOT NULL,
    app_id     TEXT   NOT NULL,
    uuid       TEXT   NOT NULL,
    owner      TEXT   NOT NULL,
    chat_id    TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_key, app_id, uuid, owner)
);

CREATE TABLE tokens (
    token      TEXT   PRIMARY KEY,
    kind       TEXT   NOT NULL,
    app_id     TEXT   NOT NULL,
    tenant_key TEXT   NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX tokens_by_app ON tokens (app_id, tenant_key, kind, expires_at);

CREATE TABLE p2p_chats (
    app_id  TEXT NOT NULL,
    uid     TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    PRIMARY KEY (app_id, uid)
);

CREATE TABLE messages (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id TEXT   NOT NULL UNIQUE,
    chat_id    TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    body       TEXT   NOT NULL
);
CREATE INDEX messages_by_chat ON messages (chat_id, created_at, seq);

CREATE TABLE message_dedup (
    app_id     TEXT   NOT NULL,
    uuid       TEXT   NOT NULL,
    message_id TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, uuid)
);

CREATE TABLE task_chats (
    task_id      TEXT    NOT NULL,
    app_id       TEXT    NOT NULL,
    chat_id      TEXT    NOT NULL REFERENCES chats (chat_id),
    started_here BOOLEAN NOT NULL,
    linked_at    BIGINT  NOT NULL,
    PRIMARY KEY (task_id, chat_id)
);
CREATE INDEX task_chats_started ON task_chats (task_id, app_id, linked_at) WHERE started_here;
