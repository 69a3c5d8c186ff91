-- Takes a run's lease if nobody holds it. Deadlines use the Redis clock.
-- KEYS[1] lease; KEYS[2] the bucket's lease deadlines.
-- ARGV[1] owner; ARGV[2] ttl ms; ARGV[3] session id.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
  return 1
end
return 0
