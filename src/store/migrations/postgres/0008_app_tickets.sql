-- Store apps' app_tickets (auth v3): one current ticket per app; a new one replaces it. At most
-- one row per app of the directory (~100 bytes each). Kept by a reset, like tokens.
CREATE TABLE app_tickets (
    app_id     TEXT   PRIMARY KEY,
    ticket     TEXT   NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
