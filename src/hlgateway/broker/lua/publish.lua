-- One lossless publication (broker/redis.py): keep the items never published
-- on the topic before (the shared exactly-once ledger), assign the next offset
-- (creating the epoch if Redis has none: a flushed or restarted Redis gives a
-- new one), append to the history and trim it by the retention settings.
--
-- Then, with `commit` 1 (no replicas to wait for), make it visible at once:
-- publish `offset:epoch:payload` to every node and move the committed head `c`
-- (what reads and replays may give) up to it. With `commit` 0 the caller first
-- waits until the replicas have it (WAIT), then runs commit.lua: nothing a
-- replica does not have is ever seen, so a failover cannot take back anything
-- a client was given.
--
-- KEYS: meta, stream.
-- ARGV: channel, new epoch, size, ttl ms, max size, keep ms (ledger), ledger key
-- prefix, payload prefix, payload suffix, commit (1|0), n, then n (id, item) pairs.
-- Returns {head, epoch, fresh}: the stream's last offset after this call, its
-- epoch ('' when it has none), and 1 if an item was new (0: nothing was added).
local fresh = {}
local n = tonumber(ARGV[11])
for i = 0, n - 1 do
  if redis.call('set', ARGV[7] .. ARGV[12 + 2 * i], '1', 'NX', 'PX', ARGV[6]) then
    fresh[#fresh + 1] = ARGV[13 + 2 * i]
  end
end
local meta = redis.call('hmget', KEYS[1], 'e', 'o', 'c')
local epoch = meta[1]
local commit = ARGV[10] == '1'

-- Publish what is stored and not yet committed, up to `upto`, in order.
local function commit_upto(upto, committed)
  if upto <= committed then return end
  for _, entry in ipairs(redis.call('xrange', KEYS[2], (committed + 1) .. '-0', upto .. '-0')) do
    local offset = string.match(entry[1], '^(%d+)')
    redis.call('publish', ARGV[1], offset .. ':' .. epoch .. ':' .. entry[2][2])
  end
  redis.call('hset', KEYS[1], 'c', upto)
end

if #fresh == 0 then
  if not epoch then return {0, '', 0} end
  local head = tonumber(meta[2] or '0')
  -- A publication sent again after a lost connection: what an earlier attempt
  -- stored may not be committed yet.
  if commit then commit_upto(head, tonumber(meta[3] or head)) end
  return {head, epoch, 0}
end
local payload = ARGV[8] .. table.concat(fresh, ',') .. ARGV[9]
if not epoch then
  epoch = ARGV[2]
  redis.call('hset', KEYS[1], 'e', epoch)
end
local offset = redis.call('hincrby', KEYS[1], 'o', 1)
-- A stream from before the committed head existed had everything committed.
local committed = tonumber(meta[3] or (offset - 1))
if not meta[3] then redis.call('hset', KEYS[1], 'c', committed) end
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
if commit then
  if committed == offset - 1 then
    -- The common case: only this one to publish, no look into the stream.
    redis.call('publish', ARGV[1], offset .. ':' .. epoch .. ':' .. payload)
    redis.call('hset', KEYS[1], 'c', offset)
  else
    commit_upto(offset, committed)
  end
end
return {offset, epoch, 1}
