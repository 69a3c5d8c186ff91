-- Session ids of the bucket whose lease deadline has passed (Redis clock).
-- KEYS[1] the bucket's lease deadlines; ARGV[1] how many at most.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[1])
