-- wrk script for scripts/im-load --conversations N: each request sends one message into the next of N
-- private conversations (round robin per thread), as that conversation's first user, each with its own
-- client_msg_id. Reads "token cid" lines from the file in $PAIRS.
local pairs_ = {}
local counter = 0
local tid = 0
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  tid = tonumber(wrk.thread:get("tid")) or 0
  for line in io.lines(os.getenv("PAIRS")) do
    local token, cid = line:match("^(%S+)%s+(%S+)$")
    if token then table.insert(pairs_, {token, cid}) end
  end
end

function request()
  counter = counter + 1
  local p = pairs_[((counter + tid * 7919) % #pairs_) + 1]
  local body = string.format('{"client_msg_id":"w%d-%d","content":"load test message %d"}', tid, counter, counter)
  return wrk.format("POST", "/v1/conversations/" .. p[2] .. "/messages", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. p[1],
  }, body)
end
