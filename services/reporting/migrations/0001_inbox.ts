import { inboxSchema } from '@astra/outbox/consumer';
import type { MigrationBuilder } from 'node-pg-migrate';

const step = inboxSchema()[0];

export const up = (pgm: MigrationBuilder) => step.up(pgm);
export const down = (pgm: MigrationBuilder) => step.down(pgm);
