-- Names one of a thread's runs by a client run id; an alias names one run.
-- KEYS[1] the thread's hash; KEYS[2] its aliases; KEYS[3] the run's record.
-- ARGV[1] alias; ARGV[2] the run's session.
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
local named = redis.call('HGET', KEYS[2], ARGV[1])
if named then
  if named == ARGV[2] then return 1 end
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
