import { parseArgs } from 'node:util';
import { loadConfig } from './config.ts';
import { createPool, ensureDatabase, migrate } from './database.ts';
import { createApiKey } from './http/auth.ts';
import { ACCOUNT_ID_PATTERN } from './trades/schema.ts';

const USAGE = `usage:
  npm run migrate -- up [count] | down [count]
  npm run cli -- keys create --account <id> [--admin]
  npm run cli -- keys create --admin`;

class UsageError extends Error {}

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
    options: { account: { type: 'string' }, admin: { type: 'boolean', default: false } },
  });
  if (positionals[0] !== 'create') throw new UsageError('keys takes create');
  const account = values.account ?? null;
  if (account === null && !values.admin) throw new UsageError('keys create needs --account <id> or --admin');
  if (account !== null && !new RegExp(ACCOUNT_ID_PATTERN).test(account)) {
    throw new UsageError('--account must be 1-64 letters, digits, _ or -');
  }
  const pool = createPool(loadConfig().databaseUrl, 1);
  try {
    const key = await createApiKey(pool, account, values.admin);
    console.log(
      `created ${values.admin ? 'an admin' : 'a'} key${account === null ? '' : ` for account ${account}`}:`,
    );
    console.log(key);
  } finally {
    await pool.end();
  }
}

const commands: Record<string, (args: string[]) => Promise<void>> = {
  migrate: migrateCommand,
  keys: keysCommand,
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
