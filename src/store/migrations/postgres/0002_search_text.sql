-- What chat search matches: the name and every i18n name, case-folded in Rust
-- (`ChatSettings::search_text`), the same bytes as on SQLite. The backfill that runs right after
-- this migration (src/store/postgres.rs) fills the older rows and makes the column NOT NULL.
ALTER TABLE chats ADD COLUMN search_text TEXT;
