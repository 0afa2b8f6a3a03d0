-- renew.lua: compare-and-PEXPIRE.
--
-- KEYS[1]  the lock key
-- ARGV[1]  the owner value given at acquire
-- ARGV[2]  the new TTL in milliseconds
--
-- Returns 1 if the lock still held ARGV[1] and its TTL was reset, 0 if it
-- expired or belongs to another owner (then nothing is changed).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
