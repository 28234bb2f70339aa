import { invalidOption } from '../errors.ts';

/**
 * Redis Cluster hash slot of a key (CRC16/XMODEM of the key or of its {hash tag}, mod 16384).
 * Written here rather than imported: node-redis keeps its copy internal, and it is a dozen lines of
 * a fixed specification.
 */
const TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++)
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[i] = crc;
  }
  return table;
})();

export function hashTag(key: string): string {
  const open = key.indexOf('{');
  if (open === -1) return key;
  const close = key.indexOf('}', open + 1);
  if (close === -1 || close === open + 1) return key;
  return key.slice(open + 1, close);
}

export function keySlot(key: string): number {
  const bytes = Buffer.from(hashTag(key));
  let crc = 0;
  for (const byte of bytes) crc = ((crc << 8) & 0xffff) ^ (TABLE[((crc >> 8) ^ byte) & 0xff] as number);
  return crc % 16384;
}

/**
 * A key in the stream's own slot, so one script can touch both in a cluster: the stream's dedupe
 * journal ('outbox-journal'), relay state ('outbox-state') or a consumer's dead letters. A stream with
 * a hash tag keeps it; one without gets its whole name as the tag.
 */
export function companionKey(stream: string, kind: string): string {
  if (hashTag(stream) !== stream) return `${stream}:${kind}`;
  // Braces that do not form a hash tag cannot be wrapped in one: no key shares such a stream's slot.
  if (/[{}]/.test(stream))
    throw invalidOption('stream', `stream name "${stream}" has braces that are not a hash tag`);
  return `{${stream}}:${kind}`;
}

export function journalKey(stream: string): string {
  return companionKey(stream, 'outbox-journal');
}
