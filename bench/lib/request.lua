-- wrk script for bench/compare.sh: one fixed request, repeated.
--   BENCH_METHOD     POST (default) or GET
--   BENCH_BODY_FILE  file whose bytes are the body (optional)
--   BENCH_HEADERS    headers separated by '|', e.g. "Content-Type: application/json|X-A: b"
-- At the end it prints one machine-readable line:
--   WRK_RESULT requests=N duration_us=N rps=F p50_us=N p90_us=N p99_us=N max_us=N mean_us=F
--              non2xx=N connect_err=N read_err=N write_err=N timeout_err=N bytes=N
wrk.method = os.getenv("BENCH_METHOD") or "POST"

local body_file = os.getenv("BENCH_BODY_FILE")
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
end

local headers = os.getenv("BENCH_HEADERS") or ""
for item in string.gmatch(headers, "[^|]+") do
  local name, value = string.match(item, "^%s*([^:]+):%s*(.-)%s*$")
  if name then wrk.headers[name] = value end
end

function done(summary, latency, requests)
  local s = summary.duration / 1e6
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f non2xx=%d connect_err=%d read_err=%d write_err=%d timeout_err=%d bytes=%d\n",
    summary.requests, summary.duration, summary.requests / s,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout, summary.bytes))
end
