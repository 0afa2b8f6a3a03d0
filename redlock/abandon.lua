-- abandon.lua: compare-and-delete without waking anyone.
--
-- KEYS[1]  the lock key
-- ARGV[1]  the owner value of an attempt that did not win a majority
--
-- Returns 1 if the key held ARGV[1] and was deleted, 0 otherwise. Unlike
-- release.lua it publishes nothing: the lock was never granted, and waking
-- the other waiters of a split vote would only make them all try again at
-- once, and split again; the random retry delay is what breaks the tie.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
return redis.call('DEL', KEYS[1])
