-- wrk script for GET /api/v1/discover: every request carries the next viewer's Bearer token.
--   wrk -t2 -c10 ... -s bench/wrk/discover.lua http://127.0.0.1:PORT/api/v1/discover?limit=20 -- TOKEN...
-- Each request takes the next token, so every viewer's feed is asked for in turn (thread k starts at
-- token k). Counts statuses like login.lua and prints one machine-readable line like report.lua, plus
-- "p95_us" and "statuses". (wrk runs for its -d duration: thread:stop() does not end a run early.)

local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "common.lua")
local counter = 0

function setup(thread)
   thread:set("offset", #common.threads)
   common.setup(thread)
end

response = common.count_status

function init(args)
   statuses = {}
   requests_by_token = {}
   for i = 1, #args do
      table.insert(requests_by_token, wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. args[i] }))
   end
   counter = offset or 0
end

function request()
   counter = counter + 1
   return requests_by_token[(counter % #requests_by_token) + 1]
end

function done(summary, latency, requests)
   common.write_result(summary, latency, { 50, 90, 95, 99 }, common.threads)
end
