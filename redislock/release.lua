-- release.lua: compare-and-delete, then wake the waiters.
--
-- KEYS[1]  the lock key
-- ARGV[1]  the owner value given at acquire
--
-- Returns 1 if the lock held ARGV[1] and was deleted, 0 if it expired or
-- belongs to another owner (then nothing is changed and nobody is woken).
-- Waiters subscribe to KEYS[1] .. ':released'; the payload is empty.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', KEYS[1] .. ':released', '')
return 1
