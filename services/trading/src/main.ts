import { pino } from 'pino';
import { buildApp } from './app.ts';
import { createDemoKeyIfEmpty, demoBanner, prepareDatabase } from './bootstrap.ts';
import { ConfigError, loadConfig } from './config.ts';
import { createPool } from './database.ts';

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = pino({ level: config.logLevel });
  await prepareDatabase(config.databaseUrl, (message) => logger.info(message));

  const pool = createPool(config.databaseUrl, config.dbPoolSize);
  const app = await buildApp({
    pool,
    eventSource: config.eventSource,
    bodyLimitBytes: config.bodyLimitBytes,
    logger,
  });
  await app.listen({ host: config.host, port: config.port });
  const demoKey = await createDemoKeyIfEmpty(pool);
  if (demoKey !== null) process.stdout.write(`${demoBanner(demoKey, config.port)}\n`);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    await app.close();
    await pool.end();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError) {
    process.stderr.write(`invalid configuration: ${error.message}\n`);
    process.exit(2);
  }
  process.stderr.write(
    `failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
});
