-- wrk script for scripts/im-load: one message per request, each with its own client_msg_id.
local counter = 0
local tid = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  tid = tonumber(wrk.thread:get("tid")) or 0
end

function request()
  counter = counter + 1
  local body = string.format('{"client_msg_id":"w%d-%d","content":"load test message %d"}', tid, counter, counter)
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. os.getenv("TOKEN"),
  }, body)
end
