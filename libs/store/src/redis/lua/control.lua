-- Records the control op a client asked for.
-- KEYS[1] state hash; ARGV[1] op.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'control', ARGV[1])
return 1
