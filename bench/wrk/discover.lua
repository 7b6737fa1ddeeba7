-- wrk script for GET /api/v1/discover: every request carries the next viewer's Bearer token.
--   wrk -t2 -c10 ... -s bench/wrk/discover.lua http://127.0.0.1:PORT/api/v1/discover?limit=20 -- TOKEN...
-- Each request takes the next token, so every viewer's feed is asked for in turn (thread k starts at
-- token k). Counts statuses like login.lua and prints one machine-readable line like report.lua, plus
-- "p95_us" and "statuses". (wrk runs for its -d duration: thread:stop() does not end a run early.)

local threads = {}
local counter = 0

function setup(thread)
   thread:set("offset", #threads)
   table.insert(threads, thread)
end

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

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
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
   local errors = summary.errors
   io.write(string.format(
      'WRK_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, ' ..
      '"p95_us": %d, "p99_us": %d, "max_us": %d, "non_2xx_3xx": %d, "connect_errors": %d, ' ..
      '"read_errors": %d, "write_errors": %d, "timeouts": %d, "statuses": {%s}}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
      latency.max, errors.status, errors.connect, errors.read, errors.write, errors.timeout,
      table.concat(parts, ", ")))
end
