-- wrk script for POST /api/v1/auth/login: the JSON body is the first script argument
--   wrk ... -s bench/wrk/login.lua http://127.0.0.1:PORT/api/v1/auth/login -- '{"email":"..","password":".."}'
-- Counts responses per status code in every thread (a 429 or 401 must not pass for throughput) and
-- prints one machine-readable line like report.lua, plus "statuses": {"200": n, ...}.

local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "common.lua")

setup = common.setup
response = common.count_status

function init(args)
   statuses = {}
   local body = args[1]
   request_bytes = wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end

function request()
   return request_bytes
end

function done(summary, latency, requests)
   common.write_result(summary, latency, { 50, 90, 99 }, common.threads)
end
