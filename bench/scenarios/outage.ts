/**
 * Scenario 5 (the outage half): the real service (relay off) and the real standalone relay
 * (`relay-main.ts`) under wrk load; Redis is killed for a while and started again. Relay and service
 * memory are sampled before, during and after; the relay's memory must stay flat while the backlog
 * grows. Also: how long the relay takes to empty the backlog once Redis is back.
 */
import { sleep } from '@astra/test-support';
import type { BenchConfig } from '../lib/config.ts';
import { databaseUrl, now, RssSampler, withClient, withDatabase, withRedis } from '../lib/infra.ts';
import { ACCOUNTS, prepareTradingDatabase, startRelayProcess, startService } from '../lib/service.ts';
import { runWrk, type WrkRun } from '../lib/wrk.ts';

export interface OutageResult {
  outageSeconds: number;
  relayRssMiB: { before: number | null; during: number | null; after: number | null };
  serviceRssMiB: { before: number | null; during: number | null; after: number | null };
  /** Relay memory stayed within 10% (or 10 MiB) of its level before the outage. */
  relayFlat: boolean | null;
  pendingAtRestart: number;
  /** From Redis being back to the backlog being empty again (null: not within the limit). */
  recoverySeconds: number | null;
  load?: WrkRun;
  error?: string;
}

export async function outageScenario(config: BenchConfig): Promise<OutageResult> {
  const before = config.quick ? 5 : 10;
  const after = config.quick ? 5 : 10;
  const result: OutageResult = {
    outageSeconds: config.outageSeconds,
    relayRssMiB: { before: null, during: null, after: null },
    serviceRssMiB: { before: null, during: null, after: null },
    relayFlat: null,
    pendingAtRestart: 0,
    recoverySeconds: null,
  };
  try {
    await withRedis((redis) =>
      withDatabase('outage', async (database) => {
        const apiKey = await prepareTradingDatabase(database);
        const url = databaseUrl(database);
        const service = await startService(database, redis.url, 'off');
        const relay = await startRelayProcess(database, redis.url);
        const pending = () =>
          withClient(url, async (client) => {
            const { rows } = await client.query<{ n: string }>(
              "SELECT count(*)::text AS n FROM event_outbox WHERE status = 'PENDING'",
            );
            return Number(rows[0]?.n ?? 0);
          });
        try {
          const rss = new RssSampler({ relay: relay.child.pid, service: service.child.pid });
          const load = runWrk({
            url: service.url,
            apiKey,
            accounts: ACCOUNTS,
            connections: 16,
            threads: 2,
            seconds: before + config.outageSeconds + after,
          });
          await sleep(before * 1000);
          const down = rss.elapsed();
          await redis.kill();
          config.log(`  outage: Redis down for ${config.outageSeconds} s`);
          await sleep(config.outageSeconds * 1000);
          const up = rss.elapsed();
          result.pendingAtRestart = await pending();
          await redis.restart();
          const restarted = now();
          config.log(`  outage: Redis back, ${result.pendingAtRestart} events pending`);
          result.load = await load;
          const limit = config.quick ? 60_000 : 180_000;
          while (now() - restarted < limit) {
            if ((await pending()) === 0) {
              result.recoverySeconds = (now() - restarted) / 1000;
              break;
            }
            await sleep(250);
          }
          rss.stop();
          result.relayRssMiB = {
            before: rss.peak('relay', 0, down),
            during: rss.peak('relay', down, up),
            after: rss.peak('relay', up),
          };
          result.serviceRssMiB = {
            before: rss.peak('service', 0, down),
            during: rss.peak('service', down, up),
            after: rss.peak('service', up),
          };
          const { before: pre, during } = result.relayRssMiB;
          result.relayFlat = pre === null || during === null ? null : during <= pre + Math.max(10, pre * 0.1);
          if (!relay.child.running) throw new Error(`the relay died: ${relay.child.logTail()}`);
        } finally {
          await relay.child.kill('SIGTERM', 5000);
          await service.child.kill('SIGTERM', 5000);
        }
      }),
    );
  } catch (error) {
    result.error = error instanceof Error ? error.message : String(error);
  }
  return result;
}
