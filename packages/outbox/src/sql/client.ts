/** A parameterised statement; `name` makes pg prepare it once per connection. */
export interface SqlQuery {
  name?: string;
  text: string;
  values?: unknown[];
}

/**
 * The one thing the library needs from the caller's database handle: pg's Client, PoolClient and Pool
 * all fit. Writers receive the caller's client so events join the caller's transaction.
 */
export interface SqlClient {
  query(query: SqlQuery): Promise<{ rows: unknown[]; rowCount: number | null }>;
}

/** Runs a query and declares the row type at the call site. */
export async function queryRows<Row>(db: SqlClient, query: SqlQuery): Promise<Row[]> {
  const result = await db.query(query);
  return result.rows as Row[];
}
