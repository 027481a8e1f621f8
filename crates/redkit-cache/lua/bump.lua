-- KEYS[1]: a namespace's generation `<prefix>:cache:<ns>:gen`.
-- ARGV[1]: channel, ARGV[2]: message prefix (the writer's id and 'g').
-- Moves the namespace to a new generation (entries of the old one age out by TTL) and
-- announces it in the same step. Reply: the new generation.
local gen = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. gen)
return gen
