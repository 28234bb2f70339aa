export { ensureDatabase } from './database.ts';
export { type RunMigrationsOptions, runMigrations } from './migrate.ts';
export { outboxSchema, type SqlMigrationBuilder } from './schema.ts';
