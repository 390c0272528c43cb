-- Delayed card-update tokens (`c-…`, POST /open-apis/interactive/v1/card/update): one per card
-- callback, valid 30 minutes for two uses. Bounded: expired rows go whenever a token is issued,
-- and at most domain::cards::MAX_CARD_TOKENS live rows (~200 bytes each) are kept. Part of the
-- state (a reset empties it), not exported: tokens live 30 minutes (docs/parity.md).
CREATE TABLE card_tokens (
    token      TEXT    PRIMARY KEY,
    app_id     TEXT    NOT NULL,
    tenant_key TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    uses       INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX card_tokens_by_issue ON card_tokens (issued_at);
