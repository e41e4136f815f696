-- Shopper-like requests for wrk:
--   wrk … -s bench/wrk_kaeru.lua 'http://127.0.0.1:P/px?a=shop1&e=view&i=sku-' -- px UIDS SKUS
--   wrk … -s bench/wrk_kaeru.lua 'http://127.0.0.1:P/ad.json?pub=news1&size=300x250' -- ad UIDS
-- Every request carries a browser User-Agent (Kaeru ignores known bots) and a uid cookie picked
-- at random from the file UIDS (one per line: the seeded shoppers). In `px` mode the URL ends
-- with the sku prefix and a random number in 1..SKUS is appended. Answers are counted by status
-- and, for JSON ads, by the decision's strategy.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "wrk_report.lua")

local USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
  .. "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"

local threads, created = {}, 0
function setup(thread)
  created = created + 1
  thread:set("thread_number", created)
  threads[#threads + 1] = thread
end

local mode, uids, skus
statuses, strategies = {}, {}

function init(args)
  mode, skus = args[1] or "ad", tonumber(args[3] or "50")
  uids = {}
  for line in io.lines(args[2]) do
    if #line > 0 then uids[#uids + 1] = line end
  end
  math.randomseed(os.time() * 1000 + (thread_number or 0))
end

function request()
  local path = wrk.path
  if mode == "px" then path = path .. math.random(skus) end
  local headers = {["User-Agent"] = USER_AGENT, ["Cookie"] = "uid=" .. uids[math.random(#uids)]}
  return wrk.format("GET", path, headers)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if mode == "ad" then
    local strategy = body and body:match('"strategy":"([%w_]+)"') or "n/a"
    strategies[strategy] = (strategies[strategy] or 0) + 1
  end
end

local function merged(name)
  local total = {}
  for _, thread in ipairs(threads) do
    for key, value in pairs(thread:get(name) or {}) do
      total[key] = (total[key] or 0) + value
    end
  end
  return total
end

function report_extra()
  return string.format('{"statuses":%s,"strategies":%s}',
    json_counts(merged("statuses")), json_counts(merged("strategies")))
end
