-- Acquire or renew an upstream lease (broker/ownership.py).
--
-- KEYS: lease. ARGV: node, ttl ms.
-- Returns 1 if the lease is this node's now, 0 if another node holds it.
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then
  redis.call('pexpire', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
  return 1
end
return 0
