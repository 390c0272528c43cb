"""Seeds a fresh larkstack for fuzzing: gets the demo app's tenant token (written to TOKEN_OUT) and
writes the schemathesis config that points the fuzzer at what exists: a few chats the demo bot is
in, and the directory's users, tasks and Kunlun IDs. The fuzzer then draws these values part of
the time (and its own the rest), so calls reach past "no such chat" into the real rules.

usage: seed.py BASE_URL ADMIN_TOKEN TOKEN_OUT CONFIG_OUT
"""

import json
import sys
import urllib.request

base, admin_token, token_out, out = sys.argv[1:5]
DEMO_APP = {"app_id": "cli_a1b2c3d4e5f60718", "app_secret": "larkstackDemoSecret0000000000001"}


def request(method, path, token=None, body=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, method=method, data=data, headers=headers)
    with urllib.request.urlopen(req) as resp:
        reply = json.load(resp)
    assert reply["code"] == 0, (path, reply)
    return reply


def call(method, path, token, body=None):
    return request(method, path, token, body)["data"]


tenant_token = request("POST", "/open-apis/auth/v3/tenant_access_token/internal", body=DEMO_APP)["tenant_access_token"]
with open(token_out, "w") as f:
    f.write(tenant_token)


directory = call("GET", "/_larkstack/directory", admin_token)
bot = next(a for a in directory["apps"] if a["app_id"] == DEMO_APP["app_id"])
tenant = bot["home_tenant_key"]
home_users = [u for u in directory["users"] if u["tenant_key"] == tenant and u["status"] == "active"]
open_ids = [u["open_ids"][bot["key"]] for u in directory["users"]]
home_open_ids = [u["open_ids"][bot["key"]] for u in home_users]


def new_chat(i, chat_type):
    data = call(
        "POST",
        "/open-apis/im/v1/chats?set_bot_manager=true",
        tenant_token,
        {"name": f"fuzz chat {i}", "chat_type": chat_type, "user_id_list": home_open_ids[: 2 + i % 3]},
    )
    call("POST", "/open-apis/im/v1/messages?receive_id_type=chat_id", tenant_token,
         {"receive_id": data["chat_id"], "msg_type": "text", "content": json.dumps({"text": "hello"})})
    return data["chat_id"]


# Disbanding them is fuzzed last (run.sh), or it would end every other operation's chats early.
chat_ids = [new_chat(i, t) for i, t in enumerate(["private", "public", "private"])]


def toml_list(values):
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


dictionaries = {
    "chat_ids": chat_ids,
    "open_ids": open_ids,
    "receivers": chat_ids + open_ids + [u["email"] for u in home_users if u.get("email")],
    "kunlun_ids": [u["kunlun_id"] for u in directory["users"] if u.get("kunlun_id")],
    "task_ids": [t["task_id"] for t in directory["tasks"]],
    "user_keys": [u["key"] for u in directory["users"]],
    "msg_types": ["text", "post", "image", "interactive", "share_chat", "system"],
    "contents": [json.dumps({"text": "fuzz"}), json.dumps({"image_key": "img_v2_fuzz"}), "{}", "[]", "null"],
}
parameters = {
    "path.chat_id": "chat_ids",
    "query.container_id": "chat_ids",
    "body.chat_id": "chat_ids",
    "body.receive_id": "receivers",
    "body.owner_id": "open_ids",
    "body.user_id_list[*]": "open_ids",
    "body.id_list[*]": "open_ids",
    "body.manager_ids[*]": "open_ids",
    "path.task_id": "task_ids",
    "body.operator_user_id": "kunlun_ids",
    "body.invite_user_ids[*]": "kunlun_ids",
    "body.kunlun_user_id": "kunlun_ids",
    "body.user": "user_keys",
    "body.msg_type": "msg_types",
    "body.content": "contents",
}
lines = []
for name, values in dictionaries.items():
    lines += [f"[dictionaries.{name}]", f"values = {toml_list([v for v in values if v])}", ""]
lines.append("[parameters]")
for key, dictionary in parameters.items():
    lines.append(f'"{key}" = {{ dictionary = "{dictionary}", probability = 0.5 }}')
with open(out, "w") as f:
    f.write("\n".join(lines) + "\n")
print(f"fuzz: seeded {len(chat_ids)} chats; {len(open_ids)} users, {len(dictionaries['task_ids'])} tasks")
