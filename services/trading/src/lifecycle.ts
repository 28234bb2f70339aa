import type { Logger } from 'pino';
import { ConfigError } from './config.ts';
import { ListenError } from './metrics.ts';

/**
 * What SIGTERM or SIGINT does: run `close` once (finish in-flight work, release locks) and exit 0. It
 * has `timeoutMs` to finish; past that, or on a second signal, the process exits 1 at once, logged.
 */
export function shutdownHandler(
  logger: Logger,
  close: () => Promise<void>,
  timeoutMs: number,
  exit: (code: number) => void = (code) => process.exit(code),
): (signal: string) => void {
  let closing = false;
  return (signal) => {
    if (closing) {
      logger.error({ signal }, 'second signal during shutdown: exiting now');
      exit(1);
      return;
    }
    closing = true;
    logger.info({ signal, timeoutMs }, 'shutting down');
    const deadline = setTimeout(() => {
      logger.error({ timeoutMs }, 'shutdown did not finish in time: exiting now');
      exit(1);
    }, timeoutMs);
    close().then(
      () => {
        clearTimeout(deadline);
        exit(0);
      },
      (error: unknown) => {
        clearTimeout(deadline);
        logger.error({ err: error }, 'shutdown failed');
        exit(1);
      },
    );
  };
}

export function onShutdown(logger: Logger, close: () => Promise<void>, timeoutMs: number): void {
  const stop = shutdownHandler(logger, close, timeoutMs);
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** Runs a process's main function; a bad configuration exits 2 with the variable named, anything else 1. */
export function runMain(main: () => Promise<void>): void {
  main().catch((error: unknown) => {
    if (error instanceof ConfigError) {
      process.stderr.write(`invalid configuration: ${error.message}\n`);
      process.exit(2);
    }
    if (error instanceof ListenError) {
      process.stderr.write(`failed to start: ${error.message}\n`);
      process.exit(1);
    }
    process.stderr.write(
      `failed to start: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  });
}
