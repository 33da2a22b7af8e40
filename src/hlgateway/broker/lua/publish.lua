-- One lossless publication (broker/redis.py): keep the items never published
-- on the topic before (the shared exactly-once ledger), assign the next offset
-- (creating the epoch if Redis has none: a flushed or restarted Redis gives a
-- new one), append to the history, trim it by the retention settings, and
-- publish `offset:epoch:payload` to every node.
--
-- KEYS: meta, stream.
-- ARGV: channel, new epoch, size, ttl ms, max size, keep ms (ledger), ledger key
-- prefix, payload prefix, payload suffix, n, then n (id, item) pairs.
-- Returns the offset, or 0 when no item was new.
local fresh = {}
local n = tonumber(ARGV[10])
for i = 0, n - 1 do
  if redis.call('set', ARGV[7] .. ARGV[11 + 2 * i], '1', 'NX', 'PX', ARGV[6]) then
    fresh[#fresh + 1] = ARGV[12 + 2 * i]
  end
end
if #fresh == 0 then return 0 end
local payload = ARGV[8] .. table.concat(fresh, ',') .. ARGV[9]
local epoch = redis.call('hget', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[2]
  redis.call('hset', KEYS[1], 'e', epoch)
end
local offset = redis.call('hincrby', KEYS[1], 'o', 1)
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[4])
redis.call('xadd', KEYS[2], 'MAXLEN', ARGV[5], offset .. '-0', 'p', payload, 't', now)
local size = tonumber(ARGV[3])
local oldest = offset > size and redis.call('xrange', KEYS[2], '-', '+', 'COUNT', 1)[1]
if oldest and tonumber(oldest[2][4]) < now - ttl then
  -- Beyond the last `size` messages and older than the ttl: trimmed. (The
  -- common case, a young oldest entry, costs the one-entry look above.)
  local old = redis.call('xrange', KEYS[2], '-', (offset - size) .. '-0', 'COUNT', 64)
  local cut = nil
  for _, entry in ipairs(old) do
    if tonumber(entry[2][4]) < now - ttl then cut = entry[1] else break end
  end
  if cut then
    local first = tonumber(string.match(cut, '^(%d+)')) + 1
    redis.call('xtrim', KEYS[2], 'MINID', first .. '-0')
  end
end
-- A stream nobody wants is forgotten this long after its last publication (the
-- ttl, but never under a minute: a short ttl trims, it does not expire).
local keep = math.max(ttl, 60000)
redis.call('pexpire', KEYS[1], keep)
redis.call('pexpire', KEYS[2], keep)
redis.call('publish', ARGV[1], offset .. ':' .. epoch .. ':' .. payload)
return offset
