-- wrk script for bench/bench.py: POST /v1/orders with a distinct order per request.
--   RD_KEY     API key (ingest scope)
--   RD_RUN     a tag making order ids unique across runs
--   RD_POOL    customers are drawn from c-pool ids p1..p<RD_POOL>
--   RD_OUT     file to write the JSON summary to (statuses, latency percentiles in µs)
-- Each wrk thread numbers its own requests; the thread id and the run tag make ids unique.

local key = os.getenv("RD_KEY") or ""
local run = os.getenv("RD_RUN") or tostring(os.time())
local pool = tonumber(os.getenv("RD_POOL") or "10000")
local out = os.getenv("RD_OUT")

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("tid", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

function init(args)
   n = 0
   ok = 0
   bad = 0
   statuses = {}
   math.randomseed(1000 + tid)
   base = os.time() - 2 * 365 * 86400
end

function request()
   n = n + 1
   local placed = os.date("!%Y-%m-%dT%H:%M:%SZ", base + math.random(0, 2 * 365 * 86400 - 1))
   local body = string.format(
      '{"order_id":"w%s-%d-%d","customer_id":"p%d","placed_at":"%s","total":"%d.%02d"}',
      run, tid, n, math.random(1, pool), placed, math.random(5, 300), math.random(0, 99))
   return wrk.format("POST", "/v1/orders", {
      ["Authorization"] = "Bearer " .. key,
      ["Content-Type"] = "application/json",
   }, body)
end

function response(status, headers, body)
   if status >= 200 and status < 300 then
      ok = ok + 1
   else
      bad = bad + 1
      local k = tostring(status)
      statuses[k] = (statuses[k] or 0) + 1
   end
end

function done(summary, latency, requests)
   local total_ok, total_bad, by = 0, 0, {}
   for _, t in ipairs(threads) do
      total_ok = total_ok + (t:get("ok") or 0)
      total_bad = total_bad + (t:get("bad") or 0)
      local s = t:get("statuses") or {}
      for k, v in pairs(s) do by[k] = (by[k] or 0) + v end
   end
   local parts = {}
   for k, v in pairs(by) do table.insert(parts, string.format('"%s":%d', k, v)) end
   local e = summary.errors
   local doc = string.format(
      '{"requests":%d,"duration_us":%d,"ok":%d,"non2xx":%d,"statuses":{%s},'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},'
      .. '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}',
      summary.requests, summary.duration, total_ok, total_bad, table.concat(parts, ","),
      e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max)
   if out then
      local f = io.open(out, "w")
      f:write(doc, "\n")
      f:close()
   else
      io.write(doc, "\n")
   end
end
