-- Chats linked to aPaaS user tasks (POST /open-apis/apaas/v1/user_tasks/:task_id/chat_group).
-- started_here = 1 marks the chat the endpoint created for (task, app); repeat calls reuse it.
CREATE TABLE task_chats (
    task_id      TEXT    NOT NULL,
    app_id       TEXT    NOT NULL,
    chat_id      TEXT    NOT NULL REFERENCES chats (chat_id),
    started_here INTEGER NOT NULL,
    linked_at    INTEGER NOT NULL,
    PRIMARY KEY (task_id, chat_id)
) WITHOUT ROWID;

CREATE INDEX task_chats_started ON task_chats (task_id, app_id, linked_at) WHERE started_here = 1;
