-- Gives a lease up if ARGV[1] holds it.
-- KEYS[1] lease; KEYS[2] the bucket's lease deadlines; ARGV[2] session id.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
end
return 1
