-- wrk script: requests against random chats from BENCH_IDS (a file, one chat_id per line).
-- BENCH_MODE=get: GET the chat. BENCH_MODE=add: add one random user (BENCH_USERS file) to it.
local mode = os.getenv("BENCH_MODE") or "get"
local token = os.getenv("BENCH_TOKEN") or "none"
local function lines(path)
  local t = {}
  for line in io.lines(path) do t[#t + 1] = line end
  return t
end
local ids = lines(os.getenv("BENCH_IDS"))
local users = mode == "add" and lines(os.getenv("BENCH_USERS")) or {}
local headers = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json; charset=utf-8" }

request = function()
  local id = ids[math.random(#ids)]
  if mode == "get" then
    return wrk.format("GET", "/open-apis/im/v1/chats/" .. id, headers)
  end
  local body = '{"id_list":["' .. users[math.random(#users)] .. '"]}'
  return wrk.format("POST", "/open-apis/im/v1/chats/" .. id .. "/members?member_id_type=open_id", headers, body)
end
