-- wrk script for bench/survey_answers.py: each request answers a different response, so every
-- acknowledged answer is a new row. Arguments: tokens file, path template with %s, threads.
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local nthreads = tonumber(args[3])
  path_template = args[2]
  tokens = {}
  local i = 0
  for line in io.lines(args[1]) do
    if i % nthreads == id then table.insert(tokens, line) end
    i = i + 1
  end
  index, ok, failed, wrapped = 0, 0, 0, 0
  body = '{"question": "craft", "answer": ["knitting", "crochet"]}'
  headers = {["Content-Type"] = "application/json"}
end

function request()
  index = index + 1
  if index > #tokens then index, wrapped = 1, 1 end
  return wrk.format("POST", string.format(path_template, tokens[index]), headers, body)
end

function response(status)
  if status == 200 then ok = ok + 1 else failed = failed + 1 end
end

function done(summary, latency)
  local acknowledged, rejected, reused = 0, 0, 0
  for _, thread in ipairs(threads) do
    acknowledged = acknowledged + thread:get("ok")
    rejected = rejected + thread:get("failed")
    reused = reused + thread:get("wrapped")
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "acknowledged": %d, "non_200": %d, ' ..
    '"socket_errors": %d, "p50_ms": %.2f, "p99_ms": %.2f, "tokens_reused": %d}\n',
    summary.requests, summary.duration / 1e6, acknowledged, rejected,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, reused))
end
