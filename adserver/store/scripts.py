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
# Returns a flat list: advertiser, last_seen_ms, {viewed newest first}, {cart}, {purchased}, ...
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
  out[#out + 1] = redis.call('ZRANGE', prefix .. 'b:' .. advertiser, 0, -1)
end
return out
"""
