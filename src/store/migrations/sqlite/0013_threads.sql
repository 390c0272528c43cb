-- Threads (issue #14): the messages of each thread, for listing one (`container_id_type=thread`).
-- Derived from the messages' bodies (`thread_id`): a thread reply is filed when written, its root
-- when the first thread reply gives it the thread; not exported (an import rebuilds it).
--
-- Bounds: at most one row (~90 bytes) per message, only for messages in a thread.
CREATE TABLE thread_messages (
    message_id TEXT NOT NULL PRIMARY KEY,
    thread_id  TEXT NOT NULL
);
CREATE INDEX thread_messages_by_thread ON thread_messages (thread_id);

INSERT INTO thread_messages (message_id, thread_id)
    SELECT message_id, json_extract(body, '$.thread_id') FROM messages WHERE json_extract(body, '$.thread_id') IS NOT NULL;
