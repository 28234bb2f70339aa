export { ensureDatabase } from './database.ts';
export { outboxSchema, type SqlMigrationBuilder } from './schema.ts';
