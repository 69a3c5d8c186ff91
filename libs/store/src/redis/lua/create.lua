-- A new session: its state and its entries in the bucket's indexes.
-- KEYS[1] state hash; KEYS[2] the bucket's index of every session,
-- KEYS[3..] its index per status (keys.rs: STATUSES order).
-- ARGV[1] ttl ms; ARGV[2] index entry; ARGV[3] entries older than this are
-- dropped from the indexes (their sessions expired); ARGV[4] status;
-- ARGV[5..] field/value pairs.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'ix', ARGV[2], unpack(ARGV, 5))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
redis.call('ZADD', KEYS[2] .. ':' .. ARGV[4], 0, ARGV[2])
for i = 2, #KEYS do
  redis.call('ZREMRANGEBYLEX', KEYS[i], '-', '(' .. ARGV[3])
end
return 1
