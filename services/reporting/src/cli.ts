import { DeadLetters, deadLetterStreamName } from '@astra/outbox/consumer';
import { ConfigError, loadConfig } from './config.ts';
import { STREAMS } from './projection.ts';

const USAGE = `usage: npm run reporting:cli -- dead-letters list | replay <entry id> <stream> | replay --all`;

/** Lists and replays the reporting group's dead letters. */
async function main(args: string[]): Promise<number> {
  const config = loadConfig();
  const letters = new DeadLetters(config.redis);
  const deadStream = (stream: string) => deadLetterStreamName(stream, config.group);
  try {
    const [command, action, ...rest] = args;
    if (command !== 'dead-letters') throw new UsageError();
    if (action === 'list') {
      for (const stream of STREAMS)
        for (const letter of await letters.list(deadStream(stream), 1000))
          process.stdout.write(`${JSON.stringify(letter)}\n`);
      return 0;
    }
    if (action === 'replay' && rest[0] === '--all') {
      let total = 0;
      for (const stream of STREAMS) total += await letters.replayAll(deadStream(stream));
      process.stdout.write(`replayed ${total}\n`);
      return 0;
    }
    if (action === 'replay' && rest.length === 2 && STREAMS.includes(rest[1] as string)) {
      const entry = await letters.replay(deadStream(rest[1] as string), rest[0] as string);
      process.stdout.write(`replayed as ${entry}\n`);
      return 0;
    }
    throw new UsageError();
  } finally {
    letters.close();
  }
}

class UsageError extends Error {}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof UsageError) process.stderr.write(`${USAGE}\n`);
    else if (error instanceof ConfigError) process.stderr.write(`invalid configuration: ${error.message}\n`);
    else process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(2);
  },
);
