export { outboxSchema, type SqlMigrationBuilder } from './schema.ts';
