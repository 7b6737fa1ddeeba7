-- wrk script for plain GET runs: sends wrk's default request, then prints one machine-readable line.
-- Latencies come from wrk's own histogram in microseconds, so nothing is parsed from wrk's text table.
-- No response() callback here on purpose: defining one makes wrk parse every body and costs it CPU.

local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "common.lua")

function done(summary, latency, requests)
   common.write_result(summary, latency, { 50, 90, 99 })
end
