-- Applies an update; an ended session keeps its status, end reason and
-- (no) producer; last_seq only grows; a status change moves the session's
-- entry between the bucket's status indexes.
-- KEYS[1] state hash; KEYS[2] the bucket's index of every session,
-- KEYS[3..] its index per status (named KEYS[2] .. ':' .. status).
-- ARGV[1] ttl ms; ARGV[2] now ms; ARGV[3] status or ''; ARGV[4] last_seq
-- or ''; ARGV[5] end reason or ''; ARGV[6] producer, '-' to clear, or ''.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local cur = redis.call('HGET', KEYS[1], 'status')
local ended = cur == 'completed' or cur == 'cancelled' or cur == 'failed'
if ARGV[3] ~= '' and not ended and ARGV[3] ~= cur then
  redis.call('HSET', KEYS[1], 'status', ARGV[3])
  local ix = redis.call('HGET', KEYS[1], 'ix')
  if ix then
    if cur then redis.call('ZREM', KEYS[2] .. ':' .. cur, ix) end
    redis.call('ZADD', KEYS[2] .. ':' .. ARGV[3], 0, ix)
  end
end
if ARGV[4] ~= '' then
  local l = tonumber(redis.call('HGET', KEYS[1], 'last_seq') or '0')
  if tonumber(ARGV[4]) > l then redis.call('HSET', KEYS[1], 'last_seq', ARGV[4]) end
end
if ARGV[5] ~= '' and not ended then redis.call('HSET', KEYS[1], 'end_reason', ARGV[5]) end
if ARGV[6] == '-' then redis.call('HDEL', KEYS[1], 'producer')
elseif ARGV[6] ~= '' and not ended then redis.call('HSET', KEYS[1], 'producer', ARGV[6]) end
redis.call('HSET', KEYS[1], 'updated', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
