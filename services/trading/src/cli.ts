import { parseArgs } from 'node:util';
import { ensureDatabase } from '@astra/outbox/migrations';
import type pg from 'pg';
import { loadConfig } from './config.ts';
import { createPool, migrate } from './database.ts';
import { createApiKeyWithId, listApiKeys, revokeApiKey } from './http/auth.ts';
import { createPublisher, OutboxAdmin } from './outbox.ts';
import { ACCOUNT_ID_PATTERN } from './trades/schema.ts';

const USAGE = `usage:
  npm run migrate -- up [count] | down [count]
  npm run cli -- keys create --account <id> [--expires <date-time>]
  npm run cli -- keys create --admin [--expires <date-time>]
  npm run cli -- keys list
  npm run cli -- keys revoke <id>
  npm run cli -- outbox status
  npm run cli -- outbox failed [--limit N]
  npm run cli -- outbox replay <id> | --all
  npm run cli -- outbox republish --since <ISO time> [--until <ISO time>] [--type T] [--aggregate A] [--dry-run]`;

class UsageError extends Error {}

// An operator's command may touch every row (outbox replay --all): minutes, not the API's seconds.
const CLI_TIMEOUTS = { statementTimeoutMs: 600_000, lockTimeoutMs: 10_000, connectTimeoutMs: 10_000 };

async function migrateCommand(args: string[]): Promise<void> {
  const [direction, count] = args;
  if (direction !== 'up' && direction !== 'down') throw new UsageError('migrate takes up or down');
  if (count !== undefined && !/^\d+$/.test(count)) throw new UsageError('count must be a whole number');
  const { databaseUrl } = loadConfig();
  await ensureDatabase(databaseUrl);
  const names = await migrate(databaseUrl, direction, count === undefined ? undefined : Number(count));
  console.log(names.length === 0 ? 'no migrations to run' : `${direction}: ${names.join(', ')}`);
}

async function keysCommand(args: string[]): Promise<void> {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      account: { type: 'string' },
      admin: { type: 'boolean', default: false },
      expires: { type: 'string' },
    },
  });
  const [action, id, ...extra] = positionals;
  if (action === 'create' && id === undefined) return createKey(values);
  if (action === 'list' && id === undefined) return withPool((pool) => listKeys(pool));
  if (action === 'revoke' && id !== undefined && extra.length === 0) {
    if (!/^[1-9]\d{0,17}$/.test(id)) throw new UsageError('keys revoke takes a key id (see keys list)');
    return withPool(async (pool) => {
      const outcome = await revokeApiKey(pool, Number(id));
      if (outcome === 'missing') throw new Error(`no key with id ${id}`);
      console.log(outcome === 'revoked' ? `revoked key ${id}` : `key ${id} was revoked already`);
    });
  }
  throw new UsageError('keys takes create, list or revoke <id>');
}

async function createKey(values: { account?: string; admin: boolean; expires?: string }): Promise<void> {
  const account = values.account ?? null;
  if (account !== null && values.admin) {
    throw new UsageError('--admin and --account do not go together: an admin key acts for every account');
  }
  if (account === null && !values.admin) throw new UsageError('keys create needs --account <id> or --admin');
  if (account !== null && !new RegExp(ACCOUNT_ID_PATTERN).test(account)) {
    throw new UsageError('--account must be 1-64 letters, digits, _ or -');
  }
  let expiresAt: Date | null = null;
  if (values.expires !== undefined) {
    // ISO 8601 only: Date.parse also accepts forms whose time zone is a guess.
    const parsed = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?$/.test(
      values.expires,
    )
      ? new Date(values.expires)
      : new Date(Number.NaN);
    if (Number.isNaN(parsed.getTime())) {
      throw new UsageError('--expires must be an ISO 8601 date or date-time, e.g. 2027-01-31T00:00:00Z');
    }
    if (parsed.getTime() <= Date.now()) throw new UsageError('--expires must be in the future');
    expiresAt = parsed;
  }
  await withPool(async (pool) => {
    const { id, key } = await createApiKeyWithId(pool, account, values.admin, expiresAt);
    const owner = account === null ? '' : ` for account ${account}`;
    const until = expiresAt === null ? '' : `, expires ${expiresAt.toISOString()}`;
    console.log(`created ${values.admin ? 'an admin' : 'a'} key${owner} (id ${id}${until}):`);
    console.log(key);
  });
}

async function listKeys(pool: pg.Pool): Promise<void> {
  const keys = await listApiKeys(pool);
  if (keys.length === 0) console.log('no keys');
  const now = Date.now();
  for (const key of keys) {
    const status =
      key.revokedAt !== null
        ? 'revoked'
        : key.expiresAt !== null && key.expiresAt.getTime() <= now
          ? 'expired'
          : 'active';
    console.log(
      [
        `id=${key.id}`,
        key.isAdmin ? 'admin' : `account=${key.accountId}`,
        status,
        `created=${key.createdAt.toISOString()}`,
        `expires=${key.expiresAt?.toISOString() ?? 'never'}`,
        `revoked=${key.revokedAt?.toISOString() ?? '-'}`,
      ].join('\t'),
    );
  }
}

async function withPool(work: (pool: pg.Pool) => Promise<void>): Promise<void> {
  const pool = createPool(loadConfig().databaseUrl, 1, CLI_TIMEOUTS);
  try {
    await work(pool);
  } finally {
    await pool.end();
  }
}

async function outboxCommand(args: string[]): Promise<void> {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      all: { type: 'boolean', default: false },
      limit: { type: 'string', default: '100' },
      since: { type: 'string' },
      until: { type: 'string' },
      type: { type: 'string' },
      aggregate: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
    },
  });
  const [action, id] = positionals;
  const pool = createPool(loadConfig().databaseUrl, 1, CLI_TIMEOUTS);
  const admin = new OutboxAdmin(pool);
  try {
    if (action === 'status') {
      const status = await admin.status();
      console.log(`pending:            ${status.pending}`);
      console.log(`failed:             ${status.failed}`);
      console.log(`blocked aggregates: ${status.blockedAggregates}`);
      console.log(`published:          ${await admin.publishedCount()}`);
      // Events behind a FAILED event of their aggregate are left out: "failed" and "blocked" count them.
      console.log(
        `oldest pending age: ${status.oldestPendingAgeSeconds.toFixed(3)} s (not behind a FAILED event)`,
      );
    } else if (action === 'failed') {
      if (!/^\d+$/.test(values.limit)) throw new UsageError('--limit must be a whole number');
      const failed = await admin.failed(Number(values.limit));
      if (failed.length === 0) console.log('no FAILED events');
      for (const event of failed) {
        console.log(
          [
            event.id,
            event.eventType,
            event.aggregateId,
            `attempts=${event.attempts}`,
            event.createdAt.toISOString(),
            event.lastError ?? '',
          ].join('\t'),
        );
      }
    } else if (action === 'replay') {
      if (values.all === (id !== undefined)) throw new UsageError('outbox replay takes an event id or --all');
      const replayed = await admin.replay(values.all ? 'all' : (id as string));
      console.log(`replayed ${replayed} event${replayed === 1 ? '' : 's'}`);
    } else if (action === 'republish') {
      await republish(admin, values);
    } else {
      throw new UsageError('outbox takes status, failed, replay or republish');
    }
  } finally {
    await pool.end();
  }
}

function time(option: string, value: string | undefined): Date | undefined {
  if (value === undefined) return undefined;
  const parsed = new Date(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || !Number.isFinite(parsed.getTime()))
    throw new UsageError(`--${option} must be an ISO time, e.g. 2026-12-03T08:00:00Z; got "${value}"`);
  return parsed;
}

async function republish(
  admin: OutboxAdmin,
  values: { since?: string; until?: string; type?: string; aggregate?: string; 'dry-run'?: boolean },
): Promise<void> {
  const since = time('since', values.since);
  if (since === undefined) throw new UsageError('outbox republish needs --since');
  const until = time('until', values.until);
  const dryRun = values['dry-run'] === true;
  const publisher = createPublisher(loadConfig());
  try {
    const report = await admin.republish(
      publisher,
      {
        since,
        ...(until === undefined ? {} : { until }),
        ...(values.type === undefined ? {} : { type: values.type }),
        ...(values.aggregate === undefined ? {} : { aggregateId: values.aggregate }),
      },
      dryRun,
    );
    console.log(`${dryRun ? 'would republish' : 'republished'} ${report.events} events`);
    for (const [stream, count] of Object.entries(report.streams)) console.log(`  ${stream}: ${count}`);
    if (report.first !== undefined && report.last !== undefined) {
      console.log(`  first: ${report.first.eventId} (${report.first.time.toISOString()})`);
      console.log(`  last:  ${report.last.eventId} (${report.last.time.toISOString()})`);
    }
  } finally {
    await publisher.close();
  }
}

const commands: Record<string, (args: string[]) => Promise<void>> = {
  migrate: migrateCommand,
  keys: keysCommand,
  outbox: outboxCommand,
};

async function main(argv: string[]): Promise<void> {
  const [name, ...args] = argv;
  const command = name === undefined ? undefined : commands[name];
  if (command === undefined) throw new UsageError(`unknown command ${name ?? '(none)'}`);
  await command(args);
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof UsageError) {
    console.error(`${error.message}\n${USAGE}`);
    process.exit(2);
  }
  console.error(error instanceof Error ? error.message : String(error));
  process.exit(1);
});
