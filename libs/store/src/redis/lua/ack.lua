-- Records a client acknowledgement, kept only if higher.
-- KEYS[1] state hash; ARGV[1] seq.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local a = tonumber(redis.call('HGET', KEYS[1], 'acked') or '0')
if tonumber(ARGV[1]) > a then redis.call('HSET', KEYS[1], 'acked', ARGV[1]) end
return 1
