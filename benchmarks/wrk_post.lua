-- wrk script for benchmarks/throughput.py: POST prebuilt beacon requests and count what came back.
--
--   wrk -s benchmarks/wrk_post.lua http://127.0.0.1:PORT/v1/events -- REQUESTS_FILE
--
-- REQUESTS_FILE has one request per line: User-Agent <TAB> X-Forwarded-For <TAB> JSON body.
-- Every request is formatted once in init(); request() only hands out the next one, so the load
-- generator spends its time on the socket, not in Lua. Each wrk thread starts at a different line.
-- Every request also carries "Origin: https://www.example.com", as a browser's fetch/sendBeacon would.
--
-- response() counts statuses and sums the "accepted" / "dropped" numbers of JSON answers;
-- done() prints one line, "WRK_RESULT {json}", that throughput.py parses.

local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

function init(args)
  local path = args[1]
  if path == nil then
    error("usage: wrk -s wrk_post.lua URL -- REQUESTS_FILE")
  end
  prebuilt = {}
  local file = assert(io.open(path, "r"))
  for line in file:lines() do
    local ua, ip, body = line:match("^([^\t]*)\t([^\t]*)\t(.+)$")
    if body ~= nil then
      local headers = {
        ["Content-Type"] = "application/json",
        ["User-Agent"] = ua,
        ["X-Forwarded-For"] = ip,
        ["Origin"] = "https://www.example.com",
      }
      prebuilt[#prebuilt + 1] = wrk.format("POST", nil, headers, body)
    end
  end
  file:close()
  if #prebuilt == 0 then
    error("no requests in " .. path)
  end
  next_index = (thread_index * 997) % #prebuilt
  ok_2xx = 0
  non_2xx = 0
  accepted = 0
  dropped = 0
  non_2xx_statuses = {}  -- status code -> count
end

function request()
  next_index = next_index % #prebuilt + 1
  return prebuilt[next_index]
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok_2xx = ok_2xx + 1
    if body ~= nil and #body > 0 then
      local a = body:match('"accepted":%s*(%d+)')
      if a ~= nil then
        accepted = accepted + tonumber(a)
      end
      local d = body:match('"dropped":%s*(%d+)')
      if d ~= nil then
        dropped = dropped + tonumber(d)
      end
    end
  else
    non_2xx = non_2xx + 1
    non_2xx_statuses[status] = (non_2xx_statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local ok, bad, acc, drop = 0, 0, 0, 0
  local statuses = {}
  for _, thread in ipairs(threads) do
    ok = ok + thread:get("ok_2xx")
    bad = bad + thread:get("non_2xx")
    acc = acc + thread:get("accepted")
    drop = drop + thread:get("dropped")
    for code, count in pairs(thread:get("non_2xx_statuses")) do
      statuses[code] = (statuses[code] or 0) + count
    end
  end
  local status_json = {}
  for code, count in pairs(statuses) do
    status_json[#status_json + 1] = string.format('"%d":%d', code, count)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"duration_us":%d,"requests":%d,"bytes":%d,"ok_2xx":%d,"non_2xx":%d,'
      .. '"accepted":%d,"dropped":%d,"non_2xx_statuses":{%s},'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d},'
      .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.duration, summary.requests, summary.bytes, ok, bad, acc, drop,
    table.concat(status_json, ","),
    e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean
  ))
end
