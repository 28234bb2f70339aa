import { outboxSchema } from '@astra/outbox/migrations';
import type { MigrationBuilder } from 'node-pg-migrate';

const step = outboxSchema()[1];

export const up = (pgm: MigrationBuilder) => step.up(pgm);
export const down = (pgm: MigrationBuilder) => step.down(pgm);
