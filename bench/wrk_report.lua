-- wrk reporting shared by the bench scripts: prints one machine-readable line at the end,
--   WRK_RESULT {"requests": …, "p50_us": …, "extra": {…}}
-- Scripts that count more (statuses, strategies) define report_extra() returning a JSON object.

local function counts_json(counts)
  local parts = {}
  for key, value in pairs(counts or {}) do
    parts[#parts + 1] = string.format('"%s":%d', tostring(key), value)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end
json_counts = counts_json

function done(summary, latency, requests)
  local e = summary.errors
  local extra = report_extra and report_extra() or "{}"
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"extra":%s}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, extra))
end
