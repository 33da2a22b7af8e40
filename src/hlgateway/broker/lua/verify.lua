-- A node that knows a lossless stream reached `offset` in `epoch` (it published
-- or delivered it) checks, after reconnecting, that Redis still has it
-- (broker/redis.py). If the stream is in that epoch and its head is below that
-- offset, its history went backwards (a failover to a replica that lacked the
-- last writes, a restart from an older snapshot): the offsets above the head
-- would be given again to other messages, and a client coming back with one of
-- them would be handed other content. The stream gets a new epoch then (every
-- position from before answers `recovered: false`), which starts at its
-- committed head (`f`, the base: nothing up to it belongs to the new epoch).
--
-- KEYS: meta. ARGV: epoch, offset, new epoch.
-- Returns 1 if the stream got a new epoch, else 0.
local meta = redis.call('hmget', KEYS[1], 'e', 'o', 'c')
if meta[1] ~= ARGV[1] then return 0 end
local head = tonumber(meta[2] or '0')
if head >= tonumber(ARGV[2]) then return 0 end
redis.call('hset', KEYS[1], 'e', ARGV[3], 'f', tonumber(meta[3] or head))
return 1
