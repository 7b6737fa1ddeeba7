-- wrk script for POST /api/v1/auth/login: the JSON body is the first script argument
--   wrk ... -s bench/wrk/login.lua http://127.0.0.1:PORT/api/v1/auth/login -- '{"email":"..","password":".."}'
-- Counts responses per status code in every thread (a 429 or 401 must not pass for throughput) and
-- prints one machine-readable line like report.lua, plus "statuses": {"200": n, ...}.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   statuses = {}
   local body = args[1]
   request_bytes = wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end

function request()
   return request_bytes
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
      '"p99_us": %d, "max_us": %d, "non_2xx_3xx": %d, "connect_errors": %d, "read_errors": %d, ' ..
      '"write_errors": %d, "timeouts": %d, "statuses": {%s}}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      errors.status, errors.connect, errors.read, errors.write, errors.timeout, table.concat(parts, ", ")))
end
