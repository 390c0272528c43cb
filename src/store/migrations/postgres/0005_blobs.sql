-- Uploaded images and files (im/v1/images, im/v1/files): what the API answers about each, and its
-- bytes. `size` is the length of `bytes`, summed per app for the blob quota (--blob-quota-bytes)
-- from the covering index.
CREATE TABLE blobs (
    key TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    tenant_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    purpose TEXT NOT NULL,
    content_type TEXT NOT NULL,
    file_name TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    bytes BYTEA NOT NULL
);
CREATE INDEX blobs_by_app ON blobs (app_id, size);
