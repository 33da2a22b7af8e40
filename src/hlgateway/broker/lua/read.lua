-- A lossless stream's epoch, head, and the history after a reader's offset
-- (broker/redis.py). A stream Redis does not have gets its epoch here.
--
-- KEYS: meta, stream.
-- ARGV: new epoch, after (-1: none), ttl ms.
-- Returns {epoch, head, entries after `after`}.
local epoch = redis.call('hget', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('hset', KEYS[1], 'e', epoch)
  redis.call('pexpire', KEYS[1], ARGV[3])
end
local head = tonumber(redis.call('hget', KEYS[1], 'o') or '0')
local after = tonumber(ARGV[2])
local entries = {}
if after >= 0 and after < head then
  entries = redis.call('xrange', KEYS[2], (after + 1) .. '-0', '+')
end
return {epoch, head, entries}
