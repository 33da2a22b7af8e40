-- A lossless stream's epoch, committed head, and the history after a
-- reader's offset (broker/redis.py). A stream Redis does not have gets its
-- epoch here.
--
-- Only what is committed is given (see publish.lua): the head is `c`, and
-- entries stop there; but for a reader whose node delivered further in this
-- epoch (`delivered`: it passed those offsets on live, so they were committed,
-- on a primary whose commit a failover lost), entries go up to that offset, if
-- stored. An epoch that began after its history went backwards (verify.lua)
-- starts at its base `f`: offsets up to it belong to no position of this epoch.
--
-- KEYS: meta, stream.
-- ARGV: new epoch, after (-1: no entries), ttl ms, the epoch the reader follows
-- ('': none), delivered (0: none) in that epoch, rebase (1: when the reader
-- follows another epoch, the entries come from the current one's base; 0: none).
-- Returns {epoch, head, entries after `after`, base, stored head (`o`: beyond
-- `head`, stored and not committed yet)}.
local meta = redis.call('hmget', KEYS[1], 'e', 'o', 'c', 'f')
local epoch = meta[1]
if not epoch then
  epoch = ARGV[1]
  redis.call('hset', KEYS[1], 'e', epoch)
  redis.call('pexpire', KEYS[1], ARGV[3])
end
local top = tonumber(meta[2] or '0')
local head = tonumber(meta[3] or top)
local base = tonumber(meta[4] or '0')
local after = tonumber(ARGV[2])
local upto = head
if ARGV[4] ~= '' and ARGV[4] ~= epoch then
  if after >= 0 then after = ARGV[6] == '1' and base or -1 end
elseif ARGV[4] ~= '' then
  upto = math.max(head, math.min(top, tonumber(ARGV[5] or '0')))
end
local entries = {}
if after >= 0 and after < upto then
  entries = redis.call('xrange', KEYS[2], (math.max(after, base) + 1) .. '-0', upto .. '-0')
end
return {epoch, head, entries, base, top}
