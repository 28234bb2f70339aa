import { createClient } from '@redis/client';

export interface StreamEntry {
  entryId: string;
  fields: Record<string, string>;
}

/** Every entry of each stream, in stream order, read in pages so a long stream is not one reply. */
export async function readStreams(
  url: string,
  streams: readonly string[],
): Promise<Map<string, StreamEntry[]>> {
  const client = createClient({ url, socket: { connectTimeout: 5000, reconnectStrategy: false } });
  client.on('error', () => {});
  await client.connect();
  try {
    const result = new Map<string, StreamEntry[]>();
    for (const stream of streams) {
      const entries: StreamEntry[] = [];
      let start = '-';
      for (;;) {
        const page = (await client.xRange(stream, start, '+', { COUNT: 2000 })) ?? [];
        for (const entry of page) {
          entries.push({ entryId: String(entry.id), fields: entry.message as Record<string, string> });
        }
        const last = page.at(-1);
        if (last === undefined || page.length < 2000) break;
        start = `(${String(last.id)}`;
      }
      result.set(stream, entries);
    }
    return result;
  } finally {
    client.destroy();
  }
}
