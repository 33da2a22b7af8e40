-- Make a lossless stream's stored publications visible, up to `upto`, once the
-- replicas have them (broker/redis.py waits with WAIT first): publish each one
-- not yet published, in order, as `offset:epoch:payload`, and move the
-- committed head `c` (what reads and replays may give) up to it. Whichever
-- node commits first publishes; a later commit of the same offsets does nothing.
--
-- KEYS: meta, stream. ARGV: channel, upto.
-- Returns {committed head, epoch} ({0, ''} for a stream Redis no longer has).
local meta = redis.call('hmget', KEYS[1], 'e', 'o', 'c')
local epoch = meta[1]
if not epoch then return {0, ''} end
local head = tonumber(meta[2] or '0')
local committed = tonumber(meta[3] or head)
local upto = math.min(tonumber(ARGV[2]), head)
if upto <= committed then return {committed, epoch} end
for _, entry in ipairs(redis.call('xrange', KEYS[2], (committed + 1) .. '-0', upto .. '-0')) do
  local offset = string.match(entry[1], '^(%d+)')
  redis.call('publish', ARGV[1], offset .. ':' .. epoch .. ':' .. entry[2][2])
end
redis.call('hset', KEYS[1], 'c', upto)
return {upto, epoch}
