-- Give an upstream lease back, if it is still this node's (broker/ownership.py).
--
-- KEYS: lease. ARGV: node.
if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end
return 1
