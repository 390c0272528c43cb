-- What chat search matches: the name and every i18n name, case-folded in Rust
-- (`ChatSettings::search_text`) so SQLite folds `Ä`, `Ω` … as PostgreSQL does. NULL only until
-- the backfill that runs right after this migration (src/store/sqlite.rs) fills the older rows.
ALTER TABLE chats ADD COLUMN search_text TEXT;
