-- Starts a thread's next run, if its latest run is still the one the caller
-- checked in the log (a compare-and-set: two starts at once cannot both win).
-- KEYS[1] the thread's hash; KEYS[2] its runs (list of `<created>:<session>`,
-- the created ms 13 digits); KEYS[3] its aliases (hash); KEYS[4] the run's record.
-- ARGV[1] ttl ms; ARGV[2] the latest run expected, '' for none; ARGV[3] the
-- new run's list entry; ARGV[4] its record (JSON); ARGV[5] alias or '';
-- ARGV[6] the new run's session.
-- Returns {1, ''} started, {0, ''} no such thread, {2, latest} moved on.
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end
local last = redis.call('LINDEX', KEYS[2], -1)
local latest = ''
if last then latest = string.sub(last, 15) end
if latest ~= ARGV[2] then return {2, latest} end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[1])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[3], ARGV[5], ARGV[6]) end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return {1, ''}
