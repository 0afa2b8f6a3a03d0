-- acquire.lua: take the lock if it is free and issue its token, atomically.
--
-- KEYS[1]  the lock key, e.g. fencer:{jobs}
-- KEYS[2]  the lock's token counter, e.g. fencer:{jobs}:token (same hash tag,
--          so the same Cluster slot; it has no TTL and outlives every grant)
-- ARGV[1]  the owner value: 128 random bits in hex, unique to this grant
-- ARGV[2]  the TTL in milliseconds
--
-- Returns an integer:
--   > 0   granted; the value is the fencing token (the counter after INCR)
--   < 0   held by another owner; -1 - n means it expires in n ms
--     0   held by another owner with no expiry (not set by fencer)
--
-- The script is idempotent for one owner value: if a client library retries
-- it after the first run succeeded but its reply was lost, the key already
-- holds ARGV[1], and the script returns the same token instead of reporting
-- the owner's own lock as held by another.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local token = redis.pcall('INCR', KEYS[2])
  if type(token) == 'table' and token.err then
    -- The counter key holds something that is not an integer. Undo the SET so
    -- that the failure does not leave the lock held by nobody's grant.
    redis.call('DEL', KEYS[1])
    return token
  end
  return token
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return tonumber(redis.call('GET', KEYS[2]))
end
local pttl = redis.call('PTTL', KEYS[1])
if pttl < 0 then
  return 0
end
return -1 - pttl
