-- acquire.lua: take the lock on this node if it is free (SET NX PX), and
-- if it is not, say for how long it stays held. A waiter's attempts after
-- its first use it, to try again when the holder's TTL runs out; a first
-- attempt sends a plain SET NX PX, which is cheaper for the node.
--
-- KEYS[1]  the lock key, e.g. fencer:{jobs}
-- ARGV[1]  the owner value: 128 random bits in hex, unique to this attempt
-- ARGV[2]  the TTL in milliseconds
--
-- Returns an integer:
--     1   granted on this node
--   < 0   held by another owner; -1 - n means it expires in n ms
--     0   held by another owner, with no expiry (not set by fencer)
--
-- Idempotent for one owner value: a client library that retries after the
-- first run succeeded but its reply was lost gets 1 again, instead of the
-- attempt's own key reported as held by another owner.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return 1
end
local pttl = redis.call('PTTL', KEYS[1])
if pttl < 0 then
  return 0
end
return -1 - pttl
