-- wrk script for a paced run: wrk_post.lua, plus a pause before each request on a connection.
--
--   wrk -s benchmarks/wrk_paced.lua http://127.0.0.1:PORT/v1/events -- REQUESTS_FILE PAUSE_MS
--
-- Pauses are drawn from an exponential distribution with mean PAUSE_MS, so the connections' requests
-- arrive spread out (about Poisson) instead of in lock-step bursts that would queue behind each other.
-- With C connections the offered rate is about C * 1000 / (PAUSE_MS + latency) requests per second:
-- throughput.py picks PAUSE_MS for a fraction of the measured maximum and reports the rate reached.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "wrk_post.lua")

local base_init = init
function init(args)
  base_init(args)
  pause_ms = tonumber(args[2] or "0")
  math.randomseed(1000 + (thread_index or 0))
end

function delay()
  return math.floor(-pause_ms * math.log(1 - math.random()) + 0.5)
end
