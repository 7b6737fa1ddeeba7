-- wrk script for plain GET runs: sends wrk's default request, then prints one machine-readable line.
-- Latencies come from wrk's own histogram in microseconds, so nothing is parsed from wrk's text table.
-- No response() callback here on purpose: defining one makes wrk parse every body and costs it CPU.

function done(summary, latency, requests)
   local errors = summary.errors
   io.write(string.format(
      'WRK_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, ' ..
      '"p99_us": %d, "max_us": %d, "non_2xx_3xx": %d, "connect_errors": %d, "read_errors": %d, ' ..
      '"write_errors": %d, "timeouts": %d}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      errors.status, errors.connect, errors.read, errors.write, errors.timeout))
end
