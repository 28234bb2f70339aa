import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { createPool } from '../src/database.ts';
import { SERVER_URL } from './support.ts';

// Found by the chaos run: pg_terminate_backend between two statements of a trade's transaction
// crashed the service with an unhandled 'error' event, because the pool listens for errors only on
// idle clients. The connection's death must surface as a failed query, never as a crash.
test('a checked-out client whose connection is terminated between queries fails its next query instead of crashing the process', async () => {
  const pool = createPool(SERVER_URL, 2);
  const admin = new pg.Client({ connectionString: SERVER_URL });
  await admin.connect();
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
    await admin.query('SELECT pg_terminate_backend($1)', [pid]);
    // The termination notice arrives while no query runs on the client: the moment that crashed it.
    await new Promise((resolve) => setTimeout(resolve, 200));
    await assert.rejects(client.query('SELECT 1'));
    client.release(true);
    // The pool carries on with a fresh connection.
    assert.equal((await pool.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one, 1);
  } finally {
    await admin.end();
    await pool.end();
  }
});

test('an idle connection that dies is reported to onError (the service logs it with its stack)', async () => {
  const errors: Error[] = [];
  const pool = createPool(SERVER_URL, 1, { onError: (error) => errors.push(error) });
  const admin = new pg.Client({ connectionString: SERVER_URL });
  await admin.connect();
  try {
    const pid = (await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
    await admin.query('SELECT pg_terminate_backend($1)', [pid]);
    const deadline = Date.now() + 10_000;
    while (errors.length === 0 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(errors.length, 1);
    assert.ok(errors[0]?.stack !== undefined);
    assert.equal((await pool.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one, 1);
  } finally {
    await admin.end();
    await pool.end();
  }
});
