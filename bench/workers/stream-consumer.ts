/**
 * The latency consumer's read loop, in a worker thread of its own: blocked in XREAD from the streams'
 * current ends, it stamps each event's arrival before the benchmark's busy producer loop can delay it.
 * Posts 'ready' once it has its starting ids, then batches of { tradeIds, at } (at on the epoch clock
 * `performance.timeOrigin + performance.now()`, which every thread shares), and 'done' after 'stop'.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createClient } from '@redis/client';
import { epochNow, tradeIdOf } from '../lib/trace.ts';

type StreamEntries = [string, string[]][];
type StreamReply = [string, StreamEntries][] | Record<string, StreamEntries> | null;

const { url, streams } = workerData as { url: string; streams: string[] };
const port = parentPort;
if (port === null) throw new Error('stream-consumer.ts runs as a worker thread');

const client = createClient({ url });
client.on('error', () => {});
let running = true;
port.on('message', (message) => {
  if (message === 'stop') running = false;
});

async function main(): Promise<void> {
  await client.connect();
  const ids = await Promise.all(
    streams.map(async (stream) => {
      const last = (await client.sendCommand(['XREVRANGE', stream, '+', '-', 'COUNT', '1'])) as [string][];
      return last[0]?.[0] ?? '0-0';
    }),
  );
  port?.postMessage({ type: 'ready' });
  while (running) {
    const reply = (await client.sendCommand([
      'XREAD',
      'COUNT',
      '1000',
      'BLOCK',
      '200',
      'STREAMS',
      ...streams,
      ...ids,
    ])) as StreamReply;
    const at = epochNow();
    if (reply === null) continue;
    const tradeIds: string[] = [];
    // node-redis answers XREAD as { stream: entries }; plain RESP2 is [[stream, entries], ...].
    const byStream = Array.isArray(reply) ? reply : Object.entries(reply);
    for (const [stream, entries] of byStream) {
      const index = streams.indexOf(stream);
      for (const [id, fields] of entries) {
        ids[index] = id;
        const data = fields[fields.indexOf('data') + 1];
        if (data === undefined) continue;
        const tradeId = tradeIdOf(data);
        if (tradeId !== undefined) tradeIds.push(tradeId);
      }
    }
    if (tradeIds.length > 0) port?.postMessage({ type: 'arrivals', tradeIds, at });
  }
}

main()
  .then(() => port.postMessage({ type: 'done' }))
  .catch((error: unknown) => port.postMessage({ type: 'error', message: String(error) }))
  .finally(() => client.destroy());
