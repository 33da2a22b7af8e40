-- A node that knows a lossless stream reached `offset` in `epoch` (it published
-- or delivered it) checks, after reconnecting, that Redis still has it
-- (broker/redis.py):
--
-- - the stream is in that epoch and its head is below that offset: its history
--   went backwards (a failover to a replica that lacked the last writes, a
--   restart from an older snapshot). The offsets above the head would be given
--   again to other messages, and a client coming back with one of them would be
--   handed other content. The stream gets a new epoch (every position from
--   before answers `recovered: false`), which starts at its committed head (`f`,
--   the base: nothing up to it belongs to the new epoch). Returns 1.
-- - the entries are there but the committed head is below that offset: the
--   commit was lost, not the entries (the replica had them, from before their
--   commit: see publish.lua). They were seen, so they are committed again:
--   published (nodes drop what they passed on already) and `c` moved up, so that
--   a client coming back with one of them is answered from the history. Returns 2.
-- - else 0.
--
-- KEYS: meta, stream. ARGV: epoch, offset, new epoch, channel.
local meta = redis.call('hmget', KEYS[1], 'e', 'o', 'c')
if meta[1] ~= ARGV[1] then return 0 end
local head = tonumber(meta[2] or '0')
local offset = tonumber(ARGV[2])
local committed = tonumber(meta[3] or head)
if head < offset then
  redis.call('hset', KEYS[1], 'e', ARGV[3], 'f', committed)
  return 1
end
if committed >= offset then return 0 end
for _, entry in ipairs(redis.call('xrange', KEYS[2], (committed + 1) .. '-0', offset .. '-0')) do
  local at = string.match(entry[1], '^(%d+)')
  redis.call('publish', ARGV[4], at .. ':' .. meta[1] .. ':' .. entry[2][2])
end
redis.call('hset', KEYS[1], 'c', offset)
return 2
