import { ENTRY_ARGS, entryArgOffset, luaEntryFields } from './entry.ts';

/**
 * The Lua scripts that publish to Redis Streams. Each runs atomically in the slot of the streams it
 * touches; every stream has two companion keys in its slot (see slot.ts):
 * - its dedupe journal: every published event id with its entry id, in time buckets, so an event
 *   offered again (a relay died between XADD and its database mark) is answered with its first entry
 *   instead of being added twice. Entries last at least one window and at most two, without per-field
 *   expiry (Redis 7.0 has none);
 * - its relay state, a hash with three fields per outbox partition p: `e<p>` the highest ownership
 *   epoch that has published there (the fence: a call with a lower epoch comes from a relay that lost
 *   the partition and is refused), `m<p>` the last entry id the relay added for p (the marker) and
 *   `c<p>` how many it has added. A relay passes the newest entry id it knows Redis acknowledged for
 *   (stream, p); a marker older than that, or none, means Redis lost data since: the call refuses
 *   that partition's events so the relay can publish the lost ones again first. Its field `added` says
 *   the stream has received entries since the state was made: a stream missing then was deleted.
 *
 * PUBLISH_SCRIPT
 * KEYS: stream_1, journal_1, state_1, stream_2, journal_2, state_2, ...
 * ARGV[1]: mode
 *   'relay'  checks fence and marker, dedupes, adds, advances the marker;
 *   'repair' checks the fence only, dedupes, adds; the marker stays until the repair is done;
 *   'replay' adds, nothing else (an operator's deliberate republish);
 *   'verify' checks fence and marker of each (stream, partition) and adds nothing;
 *   'restore' sets marker and count after a repair (the fence is checked first).
 * ARGV[2]: MAXLEN for approximate trimming, 0 for none; ARGV[3]: dedupe window in seconds
 * ARGV[4]: F, the number of (stream, partition) checks; then F * CHECK_ARGS: key index (of the stream
 * in KEYS), partition, epoch, expected entry id ('' when none), count ('restore' only).
 * Then EVENT_ARGS per event: key index, partition, and the entry's values in ENTRY_ARG_FIELDS order
 * (entry.ts: id, type, source, subject (the aggregate id), time, data, traceparent and tracestate, ''
 * when absent).
 * The script adds the field names and the constant attributes: half the arguments to encode and parse.
 * Returns one string per event ('verify' and 'restore': per check): the stream entry id (or 'ok'),
 * '!held' when an earlier event of its aggregate was refused in this call, '!fenced', '!lost:<marker>:<count>'
 * (marker '' when Redis has none), '!unmarked' (no marker, but the expected entry is still in the
 * stream: only the state was lost) or '!err:<message>' when Redis refused it.
 */
/** Arguments per (stream, partition) check in PUBLISH_SCRIPT's ARGV. */
export const CHECK_ARGS = 5;
/** Arguments per event in PUBLISH_SCRIPT's ARGV: key index, partition, then the entry's values. */
export const EVENT_ARGS = 2 + ENTRY_ARGS;
/** Where an event's entry values start among its arguments. */
const VALUES_AT = 2;
/** Lua's unpack() stops at a few thousand values: long argument lists go in chunks of this size. */
export const CHUNK = 1000;

export const PUBLISH_SCRIPT = `
local mode = ARGV[1]
local maxlen = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local bucket = math.floor(tonumber(redis.call('TIME')[1]) / window)
local CHUNK = ${CHUNK}
local first = 5 + tonumber(ARGV[4]) * ${CHECK_ARGS}

local function older(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, bm = tonumber(am), tonumber(bm)
  if am ~= bm then return am < bm end
  return tonumber(as) < tonumber(bs)
end

-- Writes to the relay state, per stream: one HSET each at the end instead of one per field.
local writes = {}
local function write(k, field, value)
  local w = writes[k]
  if not w then
    w = {}
    writes[k] = w
  end
  w[#w + 1] = field
  w[#w + 1] = value
end
local function flush()
  for k, w in pairs(writes) do redis.call('HSET', KEYS[k + 2], unpack(w)) end
end

-- The checks: per (stream, partition) a verdict, false when the call may go on. One HMGET per stream.
local verdicts = {}
local markers = {}
local checkReplies = {}
local byKey = {}
local checkedKeys = {}
local n = 0
for i = 5, first - 1, ${CHECK_ARGS} do
  n = n + 1
  local k = tonumber(ARGV[i])
  if not byKey[k] then
    byKey[k] = {}
    checkedKeys[#checkedKeys + 1] = k
  end
  table.insert(byKey[k], { at = i, n = n })
end
for _, k in ipairs(checkedKeys) do
  local fields = { 'added' }
  for _, check in ipairs(byKey[k]) do
    local p = ARGV[check.at + 1]
    fields[#fields + 1] = 'e' .. p
    fields[#fields + 1] = 'm' .. p
    fields[#fields + 1] = 'c' .. p
  end
  local state = redis.call('HMGET', KEYS[k + 2], unpack(fields))
  local gone
  for j, check in ipairs(byKey[k]) do
    local i = check.at
    local p, epoch, expected = ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
    local fence, marker, count = tonumber(state[3 * j - 1]), state[3 * j], tonumber(state[3 * j + 1]) or 0
    -- The stream itself was deleted or evicted while its state survived: its markers mean nothing.
    if marker and gone == nil then gone = state[1] == '1' and redis.call('EXISTS', KEYS[k]) == 0 end
    if marker and gone then marker = nil end
    local verdict
    if fence and fence > epoch then
      verdict = '!fenced'
    elseif mode ~= 'repair' and mode ~= 'restore' and expected ~= '' and (not marker or older(marker, expected)) then
      if not marker and #redis.call('XRANGE', KEYS[k], expected, expected) > 0 then
        verdict = '!unmarked'
      else
        verdict = '!lost:' .. (marker or '') .. ':' .. count
      end
    end
    if not verdict and (not fence or fence < epoch) then write(k, 'e' .. p, epoch) end
    if not verdict and mode == 'restore' then
      write(k, 'm' .. p, expected)
      write(k, 'c' .. p, ARGV[i + 4])
    end
    verdicts[k .. ':' .. p] = verdict or false
    markers[k .. ':' .. p] = { count = count }
    checkReplies[check.n] = verdict or 'ok'
  end
end
if mode == 'verify' or mode == 'restore' then
  flush()
  return checkReplies
end


-- Read the events, and per journal the ids to look up.
local events = {}
local idsByJournal = {}
for i = first, #ARGV, ${EVENT_ARGS} do
  local event = { k = tonumber(ARGV[i]), p = ARGV[i + 1], id = ARGV[i + ${VALUES_AT + entryArgOffset('id')}],
                  aggregate = ARGV[i + ${VALUES_AT + entryArgOffset('subject')}], at = i + ${VALUES_AT} }
  events[#events + 1] = event
  if mode ~= 'replay' then
    idsByJournal[event.k] = idsByJournal[event.k] or {}
    table.insert(idsByJournal[event.k], event.id)
  end
end

-- The entry's fields, generated from ENTRY_FIELDS (entry.ts): the consumer's decoder reads the same list.
${luaEntryFields()}

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
local last = {}
local streamAdded = {}
for _, event in ipairs(events) do
  local slot = event.k .. ':' .. event.p
  local verdict = verdicts[slot]
  if failed[event.aggregate] then
    results[#results + 1] = '!held'
  elseif verdict then
    failed[event.aggregate] = true
    results[#results + 1] = verdict
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
      if mode ~= 'replay' then
        if not streamAdded[event.k] then
          streamAdded[event.k] = true
          write(event.k, 'added', 1)
        end
        added[event.k] = added[event.k] or {}
        table.insert(added[event.k], event.id)
        table.insert(added[event.k], reply)
      end
      local marker = markers[slot]
      if mode == 'relay' and marker then
        marker.count = marker.count + 1
        last[slot] = { k = event.k, p = event.p, id = reply, marker = marker }
      end
      results[#results + 1] = reply
    end
  end
end

-- Record what was added, per journal, in the current bucket; and move the markers.
for k, entries in pairs(added) do
  local journal = KEYS[k + 1] .. ':' .. bucket
  for start = 1, #entries, CHUNK do
    redis.call('HSET', journal, unpack(entries, start, math.min(start + CHUNK - 1, #entries)))
  end
  redis.call('EXPIRE', journal, window * 2)
end
for _, moved in pairs(last) do
  write(moved.k, 'm' .. moved.p, moved.id)
  write(moved.k, 'c' .. moved.p, moved.marker.count)
end
flush()
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
