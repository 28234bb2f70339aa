import pg from 'pg';

export interface PoolOptions {
  /** Shown in pg_stat_activity, so an operator sees which service holds a session. */
  applicationName: string;
  max: number;
  /** Server-side limit per statement; the client gives up 2 s after the server would. @defaultValue none */
  statementTimeoutMs?: number;
  /** Server-side limit per lock wait. @defaultValue none */
  lockTimeoutMs?: number;
  /** Longest wait for a connection, new or free in the pool: an exhausted pool fails, never hangs. @defaultValue none */
  connectTimeoutMs?: number;
  /** Session settings sent at connect, e.g. `-c default_transaction_read_only=on`. @defaultValue none */
  options?: string;
  /** Told about idle connections that failed (the pool has dropped them already). @defaultValue ignored */
  onError?: (error: Error) => void;
}

/** A pg pool whose connections failing (database restart, pg_terminate_backend) never crash the process. */
export function createPool(databaseUrl: string, options: PoolOptions): pg.Pool {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: options.max,
    application_name: options.applicationName,
    // pg reads an undefined setting as its default: no limit.
    statement_timeout: options.statementTimeoutMs,
    // For a server that stopped answering.
    query_timeout: options.statementTimeoutMs === undefined ? undefined : options.statementTimeoutMs + 2000,
    lock_timeout: options.lockTimeoutMs,
    connectionTimeoutMillis: options.connectTimeoutMs,
    options: options.options,
  });
  // An idle client that loses its connection emits 'error'; without a listener that would crash the
  // process. The pool drops it and opens a new one.
  const onError = options.onError ?? (() => {});
  pool.on('error', (error) => onError(error));
  // The pool listens only while a client is idle: a checked-out client whose connection dies between
  // two queries of a transaction would emit an unhandled 'error' and crash the process. With this
  // listener the next query on it fails instead, and the caller releases it as broken.
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}
