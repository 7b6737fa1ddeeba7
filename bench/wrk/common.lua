-- What report.lua, login.lua and discover.lua share; each loads it with dofile from its own folder:
--   local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "common.lua")
-- (wrk loads a script with luaL_dofile, so the chunk's source is "@<the path given to -s>": this works from
-- any working directory.) wrk runs every script once per thread, each in a Lua state of its own, plus once in
-- the main state where setup() and done() are called. Nothing here is a wrk callback until a script assigns
-- it: defining response() makes wrk parse every response, which report.lua avoids on purpose.

local common = {}

-- Every thread, in the main state (setup() and done() run there).
common.threads = {}

function common.setup(thread)
   table.insert(common.threads, thread)
end

-- As response(): counts the responses per status code in this thread's global `statuses` (init() makes it).
function common.count_status(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

-- The status counts of every thread summed, as JSON members: "200": 118, "429": 2
local function status_totals(threads)
   local totals = {}
   for _, thread in ipairs(threads) do
      for status, count in pairs(thread:get("statuses")) do
         totals[status] = (totals[status] or 0) + count
      end
   end
   local parts = {}
   for status, count in pairs(totals) do
      table.insert(parts, string.format('"%d": %d', status, count))
   end
   return table.concat(parts, ", ")
end

-- From done(): prints the one machine-readable line bench/common.py's wrk_result() reads, latencies from
-- wrk's own histogram in microseconds (nothing is parsed from wrk's text table): "p<n>_us" for each of
-- `percentiles`, and "statuses" summed over `threads` when given (scripts that count them).
function common.write_result(summary, latency, percentiles, threads)
   local errors = summary.errors
   local fields = {
      string.format('"requests": %d, "duration_us": %d, "bytes": %d', summary.requests, summary.duration, summary.bytes),
   }
   for _, p in ipairs(percentiles) do
      table.insert(fields, string.format('"p%d_us": %d', p, latency:percentile(p)))
   end
   table.insert(fields, string.format(
      '"max_us": %d, "non_2xx_3xx": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d',
      latency.max, errors.status, errors.connect, errors.read, errors.write, errors.timeout))
   if threads then
      table.insert(fields, '"statuses": {' .. status_totals(threads) .. "}")
   end
   io.write("WRK_RESULT {" .. table.concat(fields, ", ") .. "}\n")
end

return common
