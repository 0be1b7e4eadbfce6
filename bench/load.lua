-- Request generators for wrk: one mode per run, chosen by the first script argument.
--
--   wrk -t T -c C -d 15s -s bench/load.lua http://127.0.0.1:PORT -- MODE DATAFILE T TAG [timed]
--
-- TAG is unique per wrk run, so emails made up by one run (register, unknown) never repeat.
-- `timed` (only with T == C: a thread's requests are then one connection's, one at a time)
-- also times each request from its sending to its answer, as the client saw it, without
-- wrk's coordinated-omission correction (bench/README.md, Columns); relogins of refresh
-- chains are not among them.
--
-- DATAFILE is a Lua file written by bench/run.py: `return {run=..., password=..., users={...},
-- access={...}, refresh={...}, distinct={...}}`. Modes that follow a per-client state (refresh
-- chains, distinct forgot emails) must run with as many threads as connections, so one thread's
-- state is one connection's state. BENCH_THINK_MS in the environment adds a pause before each
-- request (a client that is not hammering). BENCH_HISTOGRAM=1 adds the latency histogram.
-- done() prints one line `BENCH_JSON {...}`.
--
-- A refresh chain whose token is refused (its last answer was lost with a dropped connection,
-- so wrk resends the spent token, and reuse detection revokes the whole family) starts a new
-- chain with a login: otherwise every later request of that connection would be a fast 401,
-- one lost answer turning into thousands of "errors" that also pull the percentiles down. The
-- refusal counts among non2xx, the login among neither (chain_restarts); its latency is in the
-- histogram. `me` takes its access tokens from the end of the list and refresh chains from the
-- start, so a revoked chain's family never ends a `me` client's token.

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

local mode, data, thread_count, tag
local headers = {
  ["Content-Type"] = "application/json",
  -- What Render's proxy adds: the app sees an HTTPS request, as in production.
  ["X-Forwarded-Proto"] = "https",
}
local counter = 0
local static_request
local refresh_token
local relogin = false
local checking = false
local last_kind = ""
ok, non2xx, s5xx, known_ok, unknown_ok, known_sent, chain_restarts = 0, 0, 0, 0, 0, 0, 0
-- Whether this thread times its requests, and their latencies: microseconds -> count
-- (globals, for thread:get in done(), which runs in the main state where init() never ran).
timed, own = false, {}
local sent_at

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *now);
]])
local CLOCK_MONOTONIC = 1
local clock = ffi.new("bench_timespec")

local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1000000 + math.floor(tonumber(clock.tv_nsec) / 1000)
end

local function post(path, body)
  return wrk.format("POST", path, headers, body)
end

local function pick(list, n)
  return list[(n % #list) + 1]
end

function init(args)
  mode = args[1]
  data = dofile(args[2])
  thread_count = tonumber(args[3] or "1")
  tag = data.run .. "-" .. (args[4] or "0")
  timed = args[5] == "timed"
  checking = id == 0
  counter = 0
  if mode == "healthz" then
    static_request = wrk.format("GET", "/healthz", headers)
  elseif mode == "me" then
    local h = {}
    for k, v in pairs(headers) do h[k] = v end
    h["Authorization"] = "Bearer " .. pick(data.access, -1 - id)
    static_request = wrk.format("GET", "/api/v1/auth/me/", h)
  elseif mode == "refresh" then
    refresh_token = pick(data.refresh, id)
  end
end

local function forgot(email, kind)
  last_kind = kind
  if kind == "known" then
    known_sent = known_sent + 1
  end
  return post("/api/v1/auth/password/forgot/", '{"email":"' .. email .. '"}')
end

local function unknown_email()
  return string.format("nobody-%s-%d-%d@bench.example", tag, id, counter)
end

local function next_request()
  if static_request then
    return static_request
  elseif mode == "login" then
    local user = pick(data.users, id * 7919 + counter)
    return post("/api/v1/auth/login/",
      '{"email":"' .. user .. '","password":"' .. data.password .. '"}')
  elseif mode == "register" then
    local email = string.format("r-%s-%d-%d@bench.example", tag, id, counter)
    return post("/api/v1/auth/register/",
      '{"full_name":"Bench Client","email":"' .. email .. '","password":"' .. data.password .. '"}')
  elseif mode == "refresh" then
    if relogin then
      last_kind = "relogin"
      return post("/api/v1/auth/login/",
        '{"email":"' .. pick(data.users, id) .. '","password":"' .. data.password .. '"}')
    end
    last_kind = "refresh"
    return post("/api/v1/auth/token/refresh/", '{"refresh":"' .. refresh_token .. '"}')
  elseif mode == "forgot_known" then
    return forgot(pick(data.users, id * 7919 + counter), "known")
  elseif mode == "forgot_unknown" then
    return forgot(unknown_email(), "unknown")
  elseif mode == "forgot_mixed" then
    if counter % 2 == 0 then
      return forgot(pick(data.users, id * 7919 + counter), "known")
    end
    return forgot(unknown_email(), "unknown")
  elseif mode == "forgot_distinct" then
    -- Thread k takes distinct[k], distinct[k + T], ...: no user is asked for twice, so every
    -- known request must end as exactly one email. Unknown emails once the slice runs out.
    local index = id + (counter - 1) * thread_count + 1
    if index <= #data.distinct then
      return forgot(data.distinct[index], "known")
    end
    return forgot(unknown_email(), "unknown")
  end
  error("unknown mode " .. tostring(mode))
end

function request()
  if checking then
    -- wrk builds one request in thread 0 before the run, to check the script, and never sends
    -- it: it must not use up a distinct email or count as sent.
    checking = false
    local saved_counter, saved_sent = counter, known_sent
    counter = counter + 1
    local built = next_request()
    counter, known_sent = saved_counter, saved_sent
    return built
  end
  counter = counter + 1
  local built = next_request()
  if timed then
    sent_at = now_us()
  end
  return built
end

function response(status, headers, body)
  if timed and sent_at and last_kind ~= "relogin" then
    local took = now_us() - sent_at
    own[took] = (own[took] or 0) + 1
  end
  sent_at = nil
  if last_kind == "relogin" then
    -- Not a refresh: neither counted as one nor as an error (the refusal before it was).
    if status >= 200 and status < 300 then
      refresh_token = string.match(body, '"refresh"%s*:%s*"([^"]+)"') or refresh_token
      relogin = false
      chain_restarts = chain_restarts + 1
    end
    return
  end
  if status >= 200 and status < 300 then
    ok = ok + 1
    if last_kind == "known" then
      known_ok = known_ok + 1
    elseif last_kind == "unknown" then
      unknown_ok = unknown_ok + 1
    end
    if mode == "refresh" then
      refresh_token = string.match(body, '"refresh"%s*:%s*"([^"]+)"') or refresh_token
    end
  else
    non2xx = non2xx + 1
    if status >= 500 then
      s5xx = s5xx + 1
    elseif status == 401 and mode == "refresh" then
      relogin = true
    end
  end
end

local think = tonumber(os.getenv("BENCH_THINK_MS") or "0")
if think > 0 then
  function delay()
    return think
  end
end

function done(summary, latency, requests)
  local totals = {
    ok = 0, non2xx = 0, s5xx = 0, known_ok = 0, unknown_ok = 0, known_sent = 0, chain_restarts = 0,
  }
  local own_pooled, any_timed = {}, false
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do
      totals[name] = totals[name] + (thread:get(name) or 0)
    end
    if thread:get("timed") then
      any_timed = true
      for took, count in pairs(thread:get("own")) do
        own_pooled[took] = (own_pooled[took] or 0) + count
      end
    end
  end
  local e = summary.errors
  local fields = {
    string.format('"requests":%d', summary.requests),
    string.format('"duration_us":%d', summary.duration),
    string.format('"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d}',
      e.connect, e.read, e.write, e.timeout),
    string.format('"latency_us":{"p50":%d,"p90":%d,"p95":%d,"p99":%d,"max":%d,"mean":%.1f}',
      latency:percentile(50), latency:percentile(90), latency:percentile(95),
      latency:percentile(99), latency.max, latency.mean),
  }
  for name, value in pairs(totals) do
    table.insert(fields, string.format('"%s":%d', name, value))
  end
  if os.getenv("BENCH_HISTOGRAM") == "1" then
    -- Every distinct latency and its count, so that short runs can be pooled into one
    -- distribution (each lookup scans wrk's histogram: only for short, fast runs).
    local histogram = {}
    for i = 1, #latency do
      local value, count = latency(i)
      table.insert(histogram, string.format("[%d,%d]", value, count))
    end
    table.insert(fields, '"latency_histogram_us":[' .. table.concat(histogram, ",") .. "]")
  end
  if any_timed then
    local pairs_out = {}
    for took, count in pairs(own_pooled) do
      table.insert(pairs_out, string.format("[%d,%d]", took, count))
    end
    table.insert(fields, '"own_latency_histogram_us":[' .. table.concat(pairs_out, ",") .. "]")
  end
  io.write("BENCH_JSON {" .. table.concat(fields, ",") .. "}\n")
end
