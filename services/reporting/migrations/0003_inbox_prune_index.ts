import { inboxSchema } from '@astra/outbox/consumer';
import type { MigrationBuilder } from 'node-pg-migrate';

// The library's second inbox step: the index its prune pass reads.
const step = inboxSchema()[1];

export const up = (pgm: MigrationBuilder) => step.up(pgm);
export const down = (pgm: MigrationBuilder) => step.down(pgm);
