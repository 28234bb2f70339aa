/**
 * Publishes a batch to one or more streams atomically, in order, at most once per event id.
 *
 * KEYS: stream_1, journal_1, stream_2, journal_2, ...
 * ARGV[1]: MAXLEN for approximate trimming, 0 for none
 * ARGV[2]: dedupe window in seconds
 * then EVENT_ARGS per event: key index (of its stream in KEYS), and the CloudEvents attributes id,
 * type, source, subject (the aggregate id), time, data, traceparent and tracestate ('' when absent).
 * The script adds the field names and the constant attributes: half the arguments to encode and parse.
 * Returns one string per event: the stream entry id, "!held" when an earlier event of its aggregate
 * failed in this call, or "!err:<message>" when Redis refused it.
 *
 * Dedupe: every published event id is recorded with its entry id in a journal hash next to the
 * stream, bucketed by time so entries last at least one window and at most two, without per-field
 * expiry (Redis 7.0 has none). An id found in the current or previous bucket is answered with its
 * recorded entry id instead of being added again: a relay that died between XADD and its database
 * mark therefore leaves no second entry.
 */
/** Arguments per event in PUBLISH_SCRIPT's ARGV. */
const EVENT_ARGS = 9;

export const PUBLISH_SCRIPT = `
local maxlen = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local bucket = math.floor(tonumber(redis.call('TIME')[1]) / window)
local CHUNK = 1000 -- Lua's unpack() stops at a few thousand values

-- Read the events, and per journal the ids to look up.
local events = {}
local idsByJournal = {}
for i = 3, #ARGV, ${EVENT_ARGS} do
  local event = { k = tonumber(ARGV[i]), id = ARGV[i + 1], aggregate = ARGV[i + 4], at = i }
  events[#events + 1] = event
  idsByJournal[event.k] = idsByJournal[event.k] or {}
  table.insert(idsByJournal[event.k], event.id)
end

-- The entry's fields: CloudEvents attributes in structured order, the trace context when present.
local function fields(at)
  local f = { 'id', ARGV[at + 1], 'type', ARGV[at + 2], 'source', ARGV[at + 3], 'subject', ARGV[at + 4],
              'time', ARGV[at + 5], 'specversion', '1.0', 'datacontenttype', 'application/json',
              'data', ARGV[at + 6] }
  if ARGV[at + 7] ~= '' then
    f[#f + 1] = 'traceparent'
    f[#f + 1] = ARGV[at + 7]
  end
  if ARGV[at + 8] ~= '' then
    f[#f + 1] = 'tracestate'
    f[#f + 1] = ARGV[at + 8]
  end
  return f
end

-- One HMGET per journal bucket and chunk, instead of two HGETs per event.
local known = {}
for k, ids in pairs(idsByJournal) do
  for _, suffix in ipairs({ bucket - 1, bucket }) do
    for start = 1, #ids, CHUNK do
      local stop = math.min(start + CHUNK - 1, #ids)
      local found = redis.call('HMGET', KEYS[k + 1] .. ':' .. suffix, unpack(ids, start, stop))
      for j = 1, stop - start + 1 do
        if found[j] then known[ids[start + j - 1]] = found[j] end
      end
    end
  end
end

local results = {}
local failed = {}
local added = {}
for _, event in ipairs(events) do
  if failed[event.aggregate] then
    results[#results + 1] = '!held'
  elseif known[event.id] then
    results[#results + 1] = known[event.id]
  else
    local reply
    if maxlen > 0 then
      reply = redis.pcall('XADD', KEYS[event.k], 'MAXLEN', '~', maxlen, '*', unpack(fields(event.at)))
    else
      reply = redis.pcall('XADD', KEYS[event.k], '*', unpack(fields(event.at)))
    end
    if type(reply) == 'table' and reply.err then
      failed[event.aggregate] = true
      results[#results + 1] = '!err:' .. reply.err
    else
      added[event.k] = added[event.k] or {}
      table.insert(added[event.k], event.id)
      table.insert(added[event.k], reply)
      results[#results + 1] = reply
    end
  end
end

-- Record what was added, per journal, in the current bucket.
for k, entries in pairs(added) do
  local journal = KEYS[k + 1] .. ':' .. bucket
  for start = 1, #entries, CHUNK do
    redis.call('HSET', journal, unpack(entries, start, math.min(start + CHUNK - 1, #entries)))
  end
  redis.call('EXPIRE', journal, window * 2)
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
