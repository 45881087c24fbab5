-- wrk script for bench/bench.py: GET one read endpoint, one request at a time per connection.
--   RD_KEY        API key (read scope)
--   RD_PATH       the path to GET; or, when it is unset,
--   RD_CUSTOMERS  GET /v1/customers/c<i>, i drawn uniformly from 1..RD_CUSTOMERS (seeded)
--   RD_OUT        file to write the JSON summary to (statuses, latency percentiles in µs)
-- A C client on each side: the read figures set this against pgbench running the same SQL.

local key = os.getenv("RD_KEY") or ""
local path = os.getenv("RD_PATH")
if path == "" then
   path = nil
end
local customers = tonumber(os.getenv("RD_CUSTOMERS") or "0")
local out = os.getenv("RD_OUT")

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   ok = 0
   bad = 0
   math.randomseed(7)
end

function request()
   local p = path
   if not p then
      p = "/v1/customers/c" .. math.random(1, customers)
   end
   return wrk.format("GET", p, {["Authorization"] = "Bearer " .. key})
end

function response(status, headers, body)
   if status == 200 then
      ok = ok + 1
   else
      bad = bad + 1
   end
end

function done(summary, latency, requests)
   local total_ok, total_bad = 0, 0
   for _, t in ipairs(threads) do
      total_ok = total_ok + (t:get("ok") or 0)
      total_bad = total_bad + (t:get("bad") or 0)
   end
   local e = summary.errors
   local doc = string.format(
      '{"requests":%d,"duration_us":%d,"ok":%d,"non200":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}',
      summary.requests, summary.duration, total_ok, total_bad, e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max)
   local f = out and io.open(out, "w") or io.stdout
   f:write(doc, "\n")
   if out then
      f:close()
   end
end
