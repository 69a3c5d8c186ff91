-- A new thread (protocol.md §9).
-- KEYS[1] the thread's hash. ARGV[1] ttl ms; ARGV[2..] field/value pairs.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
