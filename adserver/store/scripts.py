"""Lua run inside Redis, so that each per-user operation is one round trip and atomic.

Key names come from `keys`: as KEYS where the caller knows them, else (the per-advertiser keys
LOAD_SHOPPER derives for advertisers only Redis knows) as Lua string literals of the `keys`
suffixes, substituted when this module is imported. No script spells a key name itself (hash
fields such as the caps hash's 'c:<campaign>' and marker values such as 'b:<revenue>' are
values, not key names).
"""

from __future__ import annotations

from string import Template

import orjson

from adserver.config.settings import RESERVED_PUBLISHERS
from adserver.core import value_record
from adserver.store import keys


def lua_string(text: str) -> str:
    """`text` as a Lua string literal: letters, digits and ':' '_' '-' '.' as they are, every
    other byte of its UTF-8 as a decimal escape (so no quote, backslash or newline gets in)."""
    safe = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-."
    return "'" + "".join(chr(b) if b in safe else f"\\{b:03d}" for b in text.encode()) + "'"


# The fold of one order into a value record, as `value_record.with_order` does (a contract
# test holds the two together), shared by RECORD_VALUE and RECORD_EVENT's new-purchase branch:
# fold_value(facts key, day, cents, fingerprint) keeps the record in the shopper's facts hash
# (its field keys.VALUE_FIELD: read by LOAD_SHOPPER in the facts' HMGET, no command more) and
# returns it; the caller sets the hash's TTL. The same fingerprint as the latest order changes
# nothing; a value that is not a record starts again.
VALUE_FOLD = Template("""
local function fold_value(key, day, cents, fingerprint)
  local first, last, orders, total = day, day, 1, cents
  local kept = redis.call('HGET', key, $field)
  if kept then
    local v, f, s, o, c, k = string.match(
      kept, '^([0-9a-z]+)%.([0-9a-z]+)%.([0-9a-z]+)%.([0-9a-z]+)%.([0-9a-z]+)%.([0-9a-z]*)$$')
    if v == '$version' then
      if k == fingerprint then return kept end
      f, s = tonumber(f, 36), tonumber(s, 36)
      first, last = math.min(f, day), math.min(math.max(f + s, day), $max_day)
      orders = math.min(tonumber(o, 36) + 1, $max_orders)
      total = math.min(tonumber(c, 36) + cents, $max_cents)
    end
  end
  local digits = '0123456789abcdefghijklmnopqrstuvwxyz'
  local function base36(n)
    local text = ''
    repeat
      local d = n % 36
      text = string.sub(digits, d + 1, d + 1) .. text
      n = (n - d) / 36
    until n == 0
    return text
  end
  local record = table.concat({'$version', base36(first), base36(last - first), base36(orders),
    base36(total), fingerprint}, '.')
  redis.call('HSET', key, $field, record)
  return record
end
""").substitute(
    field=lua_string(keys.VALUE_FIELD),
    version=value_record.VERSION,
    max_day=value_record.MAX_DAY,
    max_orders=value_record.MAX_ORDERS,
    max_cents=value_record.MAX_CENTS,
)

# KEYS: advertisers, viewed, cart, purchased, orders, facts, touch, forgotten, legacy orders
#       (all of one user: one slot)
# ARGV: kind, advertiser, now_ms, ttl_seconds, max_items, order, revenue,
#       click_window_ms, view_window_ms, conversions cap, today, revenue cents, fingerprint of
#       the order id, sku...
# A new purchase folds the order into the shopper's value record (in the facts hash, KEYS[6],
# VALUE_FOLD: its day, its cents) in the branch that deduplicates the order, so exactly once
# per order id.
# The conversions cap (0: none) bounds how many orders a day one shopper converts: past it a
# purchase is recorded but not attributed (the facts hash counts them: cv_day, cv_n); -1: this
# purchase is not attributed (its client is past the hourly cap, see
# adserver.delivery.impression_caps). A purchase refused attribution by a cap is kept as
# '<TAB>capped' in the orders hash: the same order from the shop's server (cap 0) is then
# attributed to the last touch (the server is trusted), once (the ledger counts each order once).
# Returns {1} when stored; for a new purchase {1, 'click'|'view'|'', attribution key, click
# time ms ('' unless a click), {sku, ms of its previous purchase, ...}}: the touch is the last
# click within the click window, else the last impression within the view window, else
# nothing; the list names the items bought before, read before this purchase overwrites their
# times (the repeat gaps, see CustomerValues.note_repeat). The click time names the click (a
# click id carries it too): the ledger counts an order once per click, whoever's browser
# reported it.
# The orders hash keeps each order's attribution ('touch<TAB>key'), and a purchase whose order
# id was already recorded changes nothing and returns {0, touch, key} as first attributed, so
# a replayed event (its conversion not counted the first time) still gets counted: the ledger
# counts each order once. An order only in the pre-attribution set of orders (KEYS[9], see
# keys.user_orders_legacy) returns {0}.
# Events may come in any order (a replay arrives after newer live events) and twice: the result
# is the same. Sets keep each member's newest time (ZADD GT), cart_since and bought_at (facts)
# the newest, a purchase empties the cart only up to its time, and a cart older than the last
# purchase changes no cart.
# An event not newer than the shopper's last erasure (KEYS[8], see keys.user_forgotten) returns
# {0} and changes nothing: it waited (for a feed, for a replay) while another process forgot them.
RECORD_EVENT = (
    VALUE_FOLD
    + """
local kind, advertiser, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ttl, cap, order = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local forgotten = redis.call('GET', KEYS[8])
if forgotten and now <= tonumber(forgotten) then return {0} end
local function add_items(key)
  for i = 14, #ARGV do redis.call('ZADD', key, 'GT', now, ARGV[i]) end
  redis.call('ZREMRANGEBYRANK', key, 0, -(cap + 1))
  redis.call('EXPIRE', key, ttl)
end
local function latest(field)  -- facts[field] := max(facts[field], now)
  local kept = redis.call('HGET', KEYS[6], field)
  if not kept or tonumber(kept) < now then redis.call('HSET', KEYS[6], field, now) end
end
redis.call('ZADD', KEYS[1], 'GT', now, advertiser)
redis.call('EXPIRE', KEYS[1], ttl)
if kind == 'view' then
  add_items(KEYS[2])
elseif kind == 'cart' then
  local bought = redis.call('HGET', KEYS[6], 'bought_at')
  if bought and tonumber(bought) >= now then return {1} end  -- that cart was bought since
  add_items(KEYS[3])
  latest('cart_since')
  redis.call('EXPIRE', KEYS[6], ttl)
elseif kind == 'purchase' then
  local kept = redis.call('HGET', KEYS[5], order)
  local function last_touch()
    local touch = redis.call('HMGET', KEYS[7], 'click', 'click_key', 'view', 'view_key')
    if touch[1] and now - tonumber(touch[1]) <= tonumber(ARGV[8]) then
      return 'click', touch[2], touch[1]
    elseif touch[3] and now - tonumber(touch[3]) <= tonumber(ARGV[9]) then
      return 'view', touch[4], ''
    end
    return '', '', ''
  end
  if kept then
    local tab = string.find(kept, '\t', 1, true)
    local via, key = string.sub(kept, 1, tab - 1), string.sub(kept, tab + 1)
    if kept == '\tcapped' and tonumber(ARGV[10]) == 0 then
      -- reported by the browser past a cap, now by the shop's server (no cap): attributed
      local clicked
      via, key, clicked = last_touch()
      redis.call('HSET', KEYS[5], order, via .. '\t' .. key)
      return {0, via, key, clicked}
    end
    return {0, via, key}
  end
  if redis.call('SISMEMBER', KEYS[9], order) == 1 then return {0} end
  local before = {}
  for i = 14, #ARGV do
    local old = redis.call('ZSCORE', KEYS[4], ARGV[i])
    if old and tonumber(old) < now then
      before[#before + 1] = ARGV[i]
      before[#before + 1] = old
    end
  end
  fold_value(KEYS[6], math.floor(now / 86400000), tonumber(ARGV[12]), ARGV[13])
  add_items(KEYS[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)  -- the cart up to this purchase
  if redis.call('ZCARD', KEYS[3]) == 0 then redis.call('HDEL', KEYS[6], 'cart_since') end
  latest('bought_at')
  redis.call('HINCRBYFLOAT', KEYS[6], 'revenue', ARGV[7])
  redis.call('HINCRBY', KEYS[6], 'orders', 1)
  redis.call('EXPIRE', KEYS[6], ttl)
  local via, key, clicked = last_touch()
  local conversions_cap = tonumber(ARGV[10])
  if via ~= '' and conversions_cap < 0 then
    via, key = '', 'capped'
  elseif via ~= '' and conversions_cap > 0 then
    if redis.call('HGET', KEYS[6], 'cv_day') ~= ARGV[11] then
      redis.call('HSET', KEYS[6], 'cv_day', ARGV[11], 'cv_n', 0)
    end
    if tonumber(redis.call('HGET', KEYS[6], 'cv_n')) >= conversions_cap then
      via, key = '', 'capped'
    else
      redis.call('HINCRBY', KEYS[6], 'cv_n', 1)
    end
  end
  redis.call('HSET', KEYS[5], order, via .. '\t' .. key)
  redis.call('EXPIRE', KEYS[5], ttl)
  return {1, via, key, clicked, before}
end
return {1}
"""
)

# Append one write's events of one shard to the shard's stream, once. KEYS: stream, marks (one
# slot). ARGV: write id ('' for no mark), now_ms, mark ttl_seconds, shard maxlen, n, n write ids
# whose marks are no longer needed (the writer saw them acknowledged), then the event documents.
# Returns 1 when appended, 0 when this write's mark was there (it was applied before).
APPEND_EVENTS = """
local n = tonumber(ARGV[5])
for i = 6, 5 + n, 1000 do
  redis.call('HDEL', KEYS[2], unpack(ARGV, i, math.min(i + 999, 5 + n)))
end
if ARGV[1] ~= '' then
  if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
for i = 6 + n, #ARGV do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', 'd', ARGV[i])
end
return 1
"""

# KEYS: advertisers (of one user). The per-advertiser keys are derived from ARGV[1], the
# user's key prefix, which carries the same hash tag, so they live in the same slot, as
# keys.user_key builds them: prefix .. suffix .. advertiser, the suffixes those of `keys`
# ($viewed and the like are replaced by them as Lua strings, see LOAD_SHOPPER below).
# ARGV: user prefix, cutoff_ms (lookback), max advertisers
# Returns a flat list per advertiser: advertiser, last_seen_ms, {sku, viewed_ms, ...},
# {cart}, {sku, purchased_ms, ...}, {revenue, orders, cart_since}, {caps member, count, ...},
# the value record or false (items newest first; the caps zset whole: its members name their
# UTC day, the caller keeps today's).
# Only what a decision can use is read: the facts first, then the cart only when cart_since
# is within the lookback (it is the newest add of a cart not bought since, so no cart item is
# newer) and the purchases only when an order was recorded (RECORD_EVENT writes the cart and
# purchase sets only with those facts, whose TTL it refreshes with theirs); the value record
# is a field of the facts hash (keys.VALUE_FIELD), read in the same HMGET: a shopper who only
# viewed costs three commands per advertiser (views, facts, caps), a buyer four (purchases).
_LOAD_SHOPPER = """
local prefix, cutoff, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local viewed, cart, purchased, facts_of, caps_of = $viewed, $cart, $purchased, $facts, $caps
local out = {}
local advertisers = redis.call(
  'ZREVRANGEBYSCORE', KEYS[1], '+inf', cutoff, 'WITHSCORES', 'LIMIT', 0, limit)
local none = {}
for i = 1, #advertisers, 2 do
  local advertiser = advertisers[i]
  out[#out + 1] = advertiser
  out[#out + 1] = advertisers[i + 1]
  out[#out + 1] = redis.call(
    'ZREVRANGEBYSCORE', prefix .. viewed .. advertiser, '+inf', cutoff, 'WITHSCORES')
  local facts = redis.call(
    'HMGET', prefix .. facts_of .. advertiser, 'revenue', 'orders', 'cart_since', $value_field)
  if facts[3] and tonumber(facts[3]) >= tonumber(cutoff) then
    out[#out + 1] = redis.call('ZREVRANGEBYSCORE', prefix .. cart .. advertiser, '+inf', cutoff)
  else
    out[#out + 1] = none
  end
  if facts[2] and tonumber(facts[2]) > 0 then
    out[#out + 1] = redis.call(
      'ZREVRANGE', prefix .. purchased .. advertiser, 0, -1, 'WITHSCORES')
  else
    out[#out + 1] = none
  end
  out[#out + 1] = {facts[1] or '0', facts[2] or '0', facts[3] or ''}
  local caps = redis.pcall('ZREVRANGE', prefix .. caps_of .. advertiser, 0, -1, 'WITHSCORES')
  if type(caps) == 'table' and caps.err then caps = none end  -- a caps hash of before
  out[#out + 1] = caps
  out[#out + 1] = facts[4]
end
return out
"""
LOAD_SHOPPER = Template(_LOAD_SHOPPER).substitute(
    viewed=lua_string(keys.VIEWED),
    cart=lua_string(keys.CART),
    purchased=lua_string(keys.PURCHASED),
    facts=lua_string(keys.FACTS),
    caps=lua_string(keys.CAPS),
    value_field=lua_string(keys.VALUE_FIELD),
)

# An impression, on the shopper's keys: today's frequency counters and the last touch.
# KEYS: caps, touch. ARGV: UTC hour (YYYYMMDDHH), now_ms, touch ttl_seconds, campaign,
# attribution key, sku...
# The caps are a zset (a hash before 2026-12-02): the counters of one impression are one
# member, '<hour><TAB>c:<campaign><TAB>i:<sku>...', counted by one ZINCRBY (the reader sums
# the members of today per counter: see adserver.store.store._caps). Only when that member
# is new (the first such impression of the hour) are other days' members deleted and the
# TTLs set, the caps 2 days and the touch its TTL (the click window): so the touch outlives
# its last impression by the click window less at most an hour (a view window that long is
# cut an hour short); a touch the HSET creates gets its TTL at once. Past FOLD_AT members
# today's are folded into one member per counter ('<hour><TAB>c:<campaign>',
# '<hour><TAB>i:<sku>'; the sums stay the same), so the zset stays about as small as the hash
# of one field per counter was. A caps hash of the format before is replaced (its counts of
# the upgrade day start again, once). A typical impression is three commands (this call,
# HSET, ZINCRBY).
CAPS_FOLD_AT = 32
_COUNT_IMPRESSION = """
local hour, ttl = ARGV[1], ARGV[3]
local parts = {hour, 'c:' .. ARGV[4]}
for i = 6, #ARGV do parts[#parts + 1] = 'i:' .. ARGV[i] end
local member = table.concat(parts, '\t')
local added = redis.call('HSET', KEYS[2], 'view', ARGV[2], 'view_key', ARGV[5])
local n = redis.pcall('ZINCRBY', KEYS[1], 1, member)
if type(n) == 'table' and n.err then  -- the caps hash of before
  redis.call('DEL', KEYS[1])
  n = redis.call('ZINCRBY', KEYS[1], 1, member)
end
if tonumber(n) == 1 then
  local stale, day = {}, string.sub(hour, 1, 8)
  local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 8) ~= day then stale[#stale + 1] = all[i] end
  end
  if #all / 2 - #stale > $fold_at then
    local sums, order = {}, {}
    for i = 1, #all, 2 do
      local name = all[i]
      local rest = string.sub(name, 12)  -- after '<hour><TAB>'
      if string.sub(name, 1, 8) == day and string.find(rest, '\t', 1, true) then
        stale[#stale + 1] = name
        for counter in string.gmatch(rest, '[^\t]+') do
          if not sums[counter] then order[#order + 1] = counter; sums[counter] = 0 end
          sums[counter] = sums[counter] + tonumber(all[i + 1])
        end
      end
    end
    for _, counter in ipairs(order) do
      redis.call('ZINCRBY', KEYS[1], sums[counter], hour .. '\t' .. counter)
    end
  end
  for i = 1, #stale, 1000 do
    redis.call('ZREM', KEYS[1], unpack(stale, i, math.min(i + 999, #stale)))
  end
  redis.call('EXPIRE', KEYS[1], 172800)
  redis.call('EXPIRE', KEYS[2], ttl)
elseif added > 0 then
  redis.call('EXPIRE', KEYS[2], ttl)
end
return 1
"""
COUNT_IMPRESSION = Template(_COUNT_IMPRESSION).substitute(fold_at=CAPS_FOLD_AT)

# The publisher a report row names (prepended to the scripts that write report counters):
# publisher ids are bounded per advertiser and day. KEYS: the day's publisher set (same slot as
# the stats). A publisher already in the set keeps its name; a new one joins while the set has
# fewer than `cap` members (cap 0: no bound); past that it folds into the one 'other' row.
# Kaeru's own channels (RESERVED_PUBLISHERS: no partner may send them) are never folded.
PUBLISHER_OF = (
    "local reserved = {"
    + ", ".join(f"[{orjson.dumps(p).decode()}] = true" for p in sorted(RESERVED_PUBLISHERS))
    + "}\n"
    + """
local function publisher_of(set, publisher, cap, ttl)
  if cap <= 0 or reserved[publisher] then return publisher end
  if redis.call('SISMEMBER', set, publisher) == 1 then return publisher end
  if redis.call('SCARD', set) < cap then
    redis.call('SADD', set, publisher)
    redis.call('EXPIRE', set, ttl)
    return publisher
  end
  return 'other'
end
"""
)

# Impressions and renders of one advertiser and day, summed over a batch (group commit).
# KEYS: daily stats, the day's publisher set, then render marker hashes (one per issue hour).
# ARGV: publisher cap, set ttl, stats ttl, then per counter 7 fields: metric, campaign,
# publisher, strategy<TAB>size, n, marker index into KEYS (0: none), impression id. A render
# counts once per impression id (HSETNX on its marker). Returns how many renders were refused.
COUNT_STATS = (
    PUBLISHER_OF
    + """
local cap, set_ttl = tonumber(ARGV[1]), ARGV[2]
local refused = 0
for i = 4, #ARGV, 7 do
  local marker = tonumber(ARGV[i + 5])
  if marker == 0 or redis.call('HSETNX', KEYS[marker], ARGV[i + 6], 1) == 1 then
    local publisher = publisher_of(KEYS[2], ARGV[i + 2], cap, set_ttl)
    local field = ARGV[i] .. '\t' .. ARGV[i + 1] .. '\t' .. publisher .. '\t' .. ARGV[i + 3]
    redis.call('HINCRBY', KEYS[1], field, ARGV[i + 4])
  else
    refused = refused + 1
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return refused
"""
)

# A click the shopper's landing page reported (its click id): the shopper's last click touch,
# unless a later click is there already. Counts nothing. KEYS: the shopper's touch hash.
# ARGV: click time ms, placement key, ttl seconds. Returns 1 when set.
SET_CLICK_TOUCH = """
local kept = redis.call('HGET', KEYS[1], 'click')
if kept and tonumber(kept) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'click', ARGV[1], 'click_key', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

# A click, on the advertiser's keys, counted once per click link for the link's lifetime.
# KEYS: click marker, daily stats, campaign totals, the day's publisher set. ARGV: campaign,
# publisher, strategy<TAB>size, marker ttl seconds, publisher cap, set ttl.
# Returns 1 when counted, 0 for a link already counted.
RECORD_CLICK = (
    PUBLISHER_OF
    + """
if not redis.call('SET', KEYS[1], 1, 'NX', 'EX', ARGV[4]) then return 0 end
local publisher = publisher_of(KEYS[4], ARGV[2], tonumber(ARGV[5]), ARGV[6])
redis.call('HINCRBY', KEYS[2], 'click\t' .. ARGV[1] .. '\t' .. publisher .. '\t' .. ARGV[3], 1)
redis.call('EXPIRE', KEYS[2], 34560000)
redis.call('HINCRBY', KEYS[3], 'click:' .. ARGV[1], 1)
return 1
"""
)

# A conversion, on the advertiser's keys (one slot): counted once per order id.
# KEYS: order marker, daily stats, campaign totals, the day's publisher set, and for an order
# attributed to a click its marker for that click (keys.click_order_marker). ARGV: campaign,
# publisher, strategy<TAB>size, revenue, marker ttl, publisher cap, set ttl, '1' when the
# shop's server reported it (the postback), else '0'. The marker keeps what was counted
# ('b:<revenue>' from the browser, 's:<revenue>' from the server): the server's word on an
# order the browser reported first replaces the browser's revenue (on the postback's day).
# An order counts once per shopper and once per click: one of its markers there is enough.
# Returns 1 when counted, 0 for an order already counted.
RECORD_CONVERSION = (
    PUBLISHER_OF
    + """
local markers = {KEYS[1], KEYS[5]}
local kept = redis.call('GET', KEYS[1]) or (KEYS[5] and redis.call('GET', KEYS[5]))
local function suffix()
  local publisher = publisher_of(KEYS[4], ARGV[2], tonumber(ARGV[6]), ARGV[7])
  return ARGV[1] .. '\t' .. publisher .. '\t' .. ARGV[3]
end
if kept then
  if ARGV[8] == '1' and string.sub(kept, 1, 2) == 'b:' then
    local delta = tonumber(ARGV[4]) - tonumber(string.sub(kept, 3))
    redis.call('HINCRBYFLOAT', KEYS[2], 'revenue\t' .. suffix(), string.format('%.6f', delta))
    redis.call('EXPIRE', KEYS[2], 34560000)
    for _, marker in ipairs(markers) do
      if redis.call('EXISTS', marker) == 1 then
        redis.call('SET', marker, 's:' .. ARGV[4], 'KEEPTTL')
      end
    end
  end
  return 0
end
local source = ARGV[8] == '1' and 's:' or 'b:'
for _, marker in ipairs(markers) do
  redis.call('SET', marker, source .. ARGV[4], 'EX', ARGV[5])
end
local fields = suffix()
redis.call('HINCRBY', KEYS[2], 'conv\t' .. fields, 1)
redis.call('HINCRBYFLOAT', KEYS[2], 'revenue\t' .. fields, ARGV[4])
redis.call('EXPIRE', KEYS[2], 34560000)
redis.call('HINCRBY', KEYS[3], 'conv:' .. ARGV[1], 1)
return 1
"""
)

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

# One batch of one event shard, applied to one advertiser's model (neighbour lists and
# popularity, all in the advertiser's slot), once: the advertiser's mark for the shard holds the
# id of the last batch applied, and a batch not newer than it (a replay after a crash) is
# skipped. KEYS: the mark, then the lists. ARGV: batch id ('ms-seq', the id of its last stream
# entry), list ttl_seconds, then per list: cap (0 = unbounded) or "cap/ttl" (that list's own
# ttl_seconds), n, n (member, weight) pairs.
# Trimming happens when a list reaches twice the cap, so new neighbours get room to grow.
# Returns 1 when applied, 0 for a replay.
APPLY_LESSONS = """
local mark = redis.call('GET', KEYS[1])
if mark then
  local bm, bs = string.match(ARGV[1], '^(%d+)-(%d+)$')
  local mm, ms = string.match(mark, '^(%d+)-(%d+)$')
  bm, bs, mm, ms = tonumber(bm), tonumber(bs), tonumber(mm), tonumber(ms)
  if bm < mm or (bm == mm and bs <= ms) then return 0 end
end
local a = 3
for k = 2, #KEYS do
  local cap, ttl = string.match(ARGV[a], '^(%d+)/(%d+)$')
  if cap then cap = tonumber(cap) else cap, ttl = tonumber(ARGV[a]), ARGV[2] end
  local n = tonumber(ARGV[a + 1])
  for i = a + 2, a + 2 * n, 2 do redis.call('ZINCRBY', KEYS[k], ARGV[i + 1], ARGV[i]) end
  if cap > 0 and redis.call('ZCARD', KEYS[k]) > 2 * cap then
    redis.call('ZREMRANGEBYRANK', KEYS[k], 0, -(cap + 1))
  end
  redis.call('EXPIRE', KEYS[k], ttl)
  a = a + 2 + 2 * n
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""

# The `trending` placement's counts: the products most viewed today or yesterday with their
# views of each day. KEYS: the advertiser's day keys (keys.popular_day), today first, then each
# day before (one slot). ARGV: how many of today's and of yesterday's best to take.
# Returns sku, then its views in each KEYS day, for each product once.
TRENDING_COUNTS = """
local depth = tonumber(ARGV[1])
local seen, out = {}, {}
for k = 1, math.min(2, #KEYS) do
  for _, sku in ipairs(redis.call('ZREVRANGE', KEYS[k], 0, depth - 1)) do
    if not seen[sku] then
      seen[sku] = true
      out[#out + 1] = sku
      for j = 1, #KEYS do out[#out + 1] = redis.call('ZSCORE', KEYS[j], sku) or '0' end
    end
  end
end
return out
"""

# A worker's heartbeat: live workers share the event shards. KEYS: the workers zset.
# ARGV: worker token, ttl_ms. Returns how many workers are alive (this one included).
WORKER_HEARTBEAT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], 10 * tonumber(ARGV[2]))
return redis.call('ZCARD', KEYS[1])
"""

# Keep a shard lease if it is still this worker's. KEYS: lease. ARGV: token, ttl_ms.
# Returns 1 when renewed, 0 when it is lost.
RENEW_LEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# Give a shard lease up if it is still this worker's. KEYS: lease. ARGV: token.
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# Write a shard's journal (the batch about to be applied), only while holding its lease, and
# renew the lease. KEYS: lease, journal. ARGV: token, ttl_ms, journal.
# Returns 1 when written, 0 when the lease is lost.
WRITE_JOURNAL = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
return 1
"""

# Acknowledge an applied batch and drop its journal, atomically, only while holding the shard's
# lease. KEYS: lease, stream, journal. ARGV: token, group, entry id...
# Returns 1 when acknowledged, 0 when the lease is lost.
ACKNOWLEDGE_BATCH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 3, #ARGV, 1000 do
  redis.call('XACK', KEYS[2], ARGV[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('DEL', KEYS[3])
return 1
"""

# The learner's state of one shopper at one shop, overwritten in one call (idempotent).
# KEYS: views window, purchases window, event count, credit (one user: one slot).
# ARGV: ttl_seconds, events, n, n viewed skus (oldest first), m, m bought skus, credit blob
SAVE_LEARNER_STATE = """
local ttl = ARGV[1]
local a = 3
for k = 1, 2 do
  local n = tonumber(ARGV[a])
  redis.call('DEL', KEYS[k])
  for i = a + 1, a + n, 1000 do
    redis.call('RPUSH', KEYS[k], unpack(ARGV, i, math.min(i + 999, a + n)))
  end
  if n > 0 then redis.call('EXPIRE', KEYS[k], ttl) end
  a = a + 1 + n
end
redis.call('SET', KEYS[3], ARGV[2], 'EX', ttl)
if ARGV[a] and ARGV[a] ~= '' then
  redis.call('SET', KEYS[4], ARGV[a], 'EX', ttl)
else
  redis.call('DEL', KEYS[4])
end
return 1
"""

# The learner's state of one shopper at one shop. KEYS: as SAVE_LEARNER_STATE.
# Returns {views, purchases, event count or false, credit blob or false}.
LOAD_LEARNER_STATE = """
return {
  redis.call('LRANGE', KEYS[1], 0, -1),
  redis.call('LRANGE', KEYS[2], 0, -1),
  redis.call('GET', KEYS[3]),
  redis.call('GET', KEYS[4]),
}
"""

# Store one campaign unless that would make more than ARGV[3] (a new id past the cap).
# KEYS[1] the advertiser's campaigns hash; ARGV: id, JSON, cap. Returns 1, or 0 when full.
PUT_CAMPAIGN = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
   and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# A page of an e-mail audience's index (keys.email_audience), oldest activity first, in the
# order Redis keeps a zset (score, then member bytewise): entries from `since` on, or after
# the cursor (score, uid) of the previous page: those tied with it at its score and after its
# uid, then those above its score. Drops what is older than the lookback first.
# KEYS: index. ARGV: since_ms, cursor score ('' on the first page), cursor uid, count, cutoff_ms.
# Returns {uid, score, uid, score, ...}: at most `count` entries.
EMAIL_AUDIENCE_PAGE = """
local index, count = KEYS[1], tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. ARGV[5])
if ARGV[2] == '' then
  return redis.call('ZRANGE', index, ARGV[1], '+inf', 'BYSCORE', 'LIMIT', 0, count, 'WITHSCORES')
end
local function later(a, b)  -- a after b, bytewise as Redis orders members (not the locale's)
  for i = 1, math.min(#a, #b) do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return x > y end
  end
  return #a > #b
end
local out = {}
local ties = redis.call('ZRANGE', index, ARGV[2], ARGV[2], 'BYSCORE', 'WITHSCORES')
for i = 1, #ties, 2 do
  if #out < 2 * count and later(ties[i], ARGV[3]) then
    out[#out + 1] = ties[i]
    out[#out + 1] = ties[i + 1]
  end
end
if #out < 2 * count then
  local rest = redis.call(
    'ZRANGE', index, '(' .. ARGV[2], '+inf', 'BYSCORE', 'LIMIT', 0, count - #out / 2, 'WITHSCORES')
  for i = 1, #rest do out[#out + 1] = rest[i] end
end
return out
"""

# Shoppers a listing found without their e-mail (it expired) out of the index, each only if
# its score is still the one the listing read: one who identified again meanwhile stays.
# KEYS: index. ARGV: uid, score, uid, score, ... Returns how many were removed.
EMAIL_AUDIENCE_DROP = """
local removed = 0
for i = 1, #ARGV, 2 do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
"""

# A new order in the shopper's value record at one shop, kept as `value_record.encode_record`
# writes it (VALUE_FOLD). KEYS: facts, forgotten (one slot). ARGV: day, cents, fingerprint of
# the order id, ttl_seconds, now_ms. An order not newer than the shopper's last erasure
# (keys.user_forgotten) changes nothing and returns false. Returns the record kept.
RECORD_VALUE = (
    VALUE_FOLD
    + """
local forgotten = redis.call('GET', KEYS[2])
if forgotten and tonumber(ARGV[5]) <= tonumber(forgotten) then return false end
local record = fold_value(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return record
"""
)

# A shopper's latest gap between two purchases of a product, into the shop's bounded hash of
# them (keys.value_repeat_gaps). KEYS[1] the hash; ARGV: field '<uid><TAB><sku>', value
# '<gap days>:<day>', cap, ttl_seconds. A new field past the cap is refused (returns 0).
NOTE_REPEAT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
   and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""
