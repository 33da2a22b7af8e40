-- A lossless stream's epoch, committed head, and the history after a
-- reader's offset (broker/redis.py). A stream Redis does not have gets its
-- epoch here.
--
-- Only what is committed is given (see publish.lua): the head is `c`, and
-- entries stop there. An epoch that began after its history went backwards
-- (verify.lua) starts at its base `f`: offsets up to it belong to no position
-- of this epoch.
--
-- KEYS: meta, stream.
-- ARGV: new epoch, after (-1: no entries), ttl ms, the epoch the reader follows
-- ('': none): when it is another one, the entries come from the epoch's base.
-- Returns {epoch, head, entries after `after`, base}.
local meta = redis.call('hmget', KEYS[1], 'e', 'o', 'c', 'f')
local epoch = meta[1]
if not epoch then
  epoch = ARGV[1]
  redis.call('hset', KEYS[1], 'e', epoch)
  redis.call('pexpire', KEYS[1], ARGV[3])
end
local head = tonumber(meta[3] or meta[2] or '0')
local base = tonumber(meta[4] or '0')
local after = tonumber(ARGV[2])
if after >= 0 and ARGV[4] ~= '' and ARGV[4] ~= epoch then after = base end
local entries = {}
if after >= 0 and after < head then
  entries = redis.call('xrange', KEYS[2], (math.max(after, base) + 1) .. '-0', head .. '-0')
end
return {epoch, head, entries, base}
