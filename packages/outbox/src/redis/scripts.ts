/**
 * Publishes a batch to one or more streams atomically, in order, at most once per event id.
 *
 * KEYS: stream_1, journal_1, stream_2, journal_2, ...
 * ARGV[1]: MAXLEN for approximate trimming, 0 for none
 * ARGV[2]: dedupe window in seconds
 * then per event: key index (of its stream in KEYS), event id, aggregate id, field count, fields...
 * Returns one string per event: the stream entry id, "!held" when an earlier event of its aggregate
 * failed in this call, or "!err:<message>" when Redis refused it.
 *
 * Dedupe: every published event id is recorded with its entry id in a journal hash next to the
 * stream, bucketed by time so entries last at least one window and at most two, without per-field
 * expiry (Redis 7.0 has none). An id found in the current or previous bucket is answered with its
 * recorded entry id instead of being added again: a relay that died between XADD and its database
 * mark therefore leaves no second entry.
 */
export const PUBLISH_SCRIPT = `
local maxlen = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local bucket = math.floor(tonumber(redis.call('TIME')[1]) / window)
local results = {}
local failed = {}
local touched = {}
local i = 3
while i <= #ARGV do
  local k = tonumber(ARGV[i])
  local id = ARGV[i + 1]
  local aggregate = ARGV[i + 2]
  local n = tonumber(ARGV[i + 3])
  local stream = KEYS[k]
  local current = KEYS[k + 1] .. ':' .. bucket
  local previous = KEYS[k + 1] .. ':' .. (bucket - 1)
  if failed[aggregate] then
    results[#results + 1] = '!held'
  else
    local existing = redis.call('HGET', current, id) or redis.call('HGET', previous, id)
    if existing then
      results[#results + 1] = existing
    else
      local reply
      if maxlen > 0 then
        reply = redis.pcall('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(ARGV, i + 4, i + 3 + n))
      else
        reply = redis.pcall('XADD', stream, '*', unpack(ARGV, i + 4, i + 3 + n))
      end
      if type(reply) == 'table' and reply.err then
        failed[aggregate] = true
        results[#results + 1] = '!err:' .. reply.err
      else
        redis.call('HSET', current, id, reply)
        if not touched[current] then
          redis.call('EXPIRE', current, window * 2)
          touched[current] = true
        end
        results[#results + 1] = reply
      end
    end
  end
  i = i + 4 + n
end
return results
`;

/**
 * Forgets confirmed event ids (their PUBLISHED mark is committed, so they will not be offered again).
 * KEYS[1]: journal; ARGV[1]: window in seconds; ARGV[2..]: event ids.
 */
export const CONFIRM_SCRIPT = `
local window = tonumber(ARGV[1])
local bucket = math.floor(tonumber(redis.call('TIME')[1]) / window)
local ids = {unpack(ARGV, 2)}
redis.call('HDEL', KEYS[1] .. ':' .. bucket, unpack(ids))
redis.call('HDEL', KEYS[1] .. ':' .. (bucket - 1), unpack(ids))
return #ids
`;
