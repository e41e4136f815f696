"""Lua run inside Redis, so that each per-user operation is one round trip and atomic."""

from __future__ import annotations

# KEYS: advertisers, viewed, cart, purchased, orders (all of one user: one slot)
# ARGV: kind, advertiser, now_ms, ttl_seconds, max_views, order, sku...
# Returns 1 when stored, 0 for a purchase whose order id was already recorded.
RECORD_EVENT = """
local kind, advertiser, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ttl, cap, order = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local function add_items(key)
  for i = 7, #ARGV do redis.call('ZADD', key, now, ARGV[i]) end
  redis.call('ZREMRANGEBYRANK', key, 0, -(cap + 1))
  redis.call('EXPIRE', key, ttl)
end
if kind == 'purchase' then
  if redis.call('SADD', KEYS[5], order) == 0 then return 0 end
  redis.call('EXPIRE', KEYS[5], ttl)
  add_items(KEYS[4])
  redis.call('DEL', KEYS[3])
elseif kind == 'view' then
  add_items(KEYS[2])
elseif kind == 'cart' then
  add_items(KEYS[3])
end
redis.call('ZADD', KEYS[1], now, advertiser)
redis.call('EXPIRE', KEYS[1], ttl)
return 1
"""

# KEYS: advertisers (of one user). The per-advertiser keys are derived from ARGV[1], the
# user's key prefix, which carries the same hash tag, so they live in the same slot.
# ARGV: user prefix, cutoff_ms (lookback), max advertisers
# Returns a flat list: advertiser, last_seen_ms, {viewed}, {cart}, {purchased}, ... (newest first)
LOAD_SHOPPER = """
local prefix, cutoff, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
local advertisers = redis.call(
  'ZREVRANGEBYSCORE', KEYS[1], '+inf', cutoff, 'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #advertisers, 2 do
  local advertiser = advertisers[i]
  out[#out + 1] = advertiser
  out[#out + 1] = advertisers[i + 1]
  out[#out + 1] = redis.call('ZREVRANGEBYSCORE', prefix .. 'v:' .. advertiser, '+inf', cutoff)
  out[#out + 1] = redis.call('ZREVRANGEBYSCORE', prefix .. 'c:' .. advertiser, '+inf', cutoff)
  out[#out + 1] = redis.call('ZREVRANGE', prefix .. 'b:' .. advertiser, 0, -1)
end
return out
"""

# Add weights to one neighbour list, keep it bounded, keep it alive.
# KEYS: the list. ARGV: cap (0 = unbounded), ttl_seconds, member, weight, member, weight, ...
# Trimming happens when the list reaches twice the cap, so new neighbours get room to grow.
ADD_NEIGHBOURS = """
for i = 3, #ARGV, 2 do redis.call('ZINCRBY', KEYS[1], ARGV[i + 1], ARGV[i]) end
local cap = tonumber(ARGV[1])
if cap > 0 and redis.call('ZCARD', KEYS[1]) > 2 * cap then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(cap + 1))
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""

# Read one neighbour list with the popularity counts that normalise it.
# KEYS: the list, the advertiser's popularity zset (same slot). ARGV: item, depth.
# Returns {count of item, neighbour, weight, count, neighbour, weight, count, ...}.
READ_NEIGHBOURS = """
local top = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1, 'WITHSCORES')
local out = {redis.call('ZSCORE', KEYS[2], ARGV[1]) or '0'}
for i = 1, #top, 2 do
  out[#out + 1] = top[i]
  out[#out + 1] = top[i + 1]
  out[#out + 1] = redis.call('ZSCORE', KEYS[2], top[i]) or '0'
end
return out
"""
