-- wrk script for `make bench`: optional POST bodies, and one JSON line with the figures at the end.
-- Arguments after `--`: a Cookie header value ("" for none), then zero or more form bodies; with
-- bodies, every request is a POST of the next body in turn (so the demo cards take turns).
local bodies = {}
local n = 0

function init(args)
  wrk.headers["Accept-Encoding"] = "gzip, deflate, br, zstd"  -- what a current phone browser sends
  if args[1] and args[1] ~= "" then wrk.headers["Cookie"] = args[1] end
  for i = 2, #args do bodies[#bodies + 1] = args[i] end
  if #bodies > 0 then wrk.headers["Content-Type"] = "application/x-www-form-urlencoded" end
end

function request()
  if #bodies == 0 then return wrk.format("GET") end
  n = n % #bodies + 1
  return wrk.format("POST", nil, nil, bodies[n])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
