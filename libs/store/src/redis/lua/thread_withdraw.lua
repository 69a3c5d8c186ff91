-- Takes back a thread's latest run (its request could not be queued).
-- KEYS[1] the thread's hash; KEYS[2] its runs; KEYS[3] its aliases;
-- KEYS[4] the run's record. ARGV[1] the run's session.
local last = redis.call('LINDEX', KEYS[2], -1)
if not last or string.sub(last, 15) ~= ARGV[1] then return 0 end
redis.call('RPOP', KEYS[2])
redis.call('DEL', KEYS[4])
local aliases = redis.call('HGETALL', KEYS[3])
for i = 1, #aliases, 2 do
  if aliases[i + 1] == ARGV[1] then redis.call('HDEL', KEYS[3], aliases[i]) end
end
return 1
