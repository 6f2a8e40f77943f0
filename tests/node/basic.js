// node-postgres through the relay: parameterised queries, prepared (named)
// statements, transactions, errors, and many parallel connections.
// usage: node tests/node/basic.js URI      -> prints "ok ..." lines, exits 0
'use strict';
const { Client, Pool } = require('pg');

const uri = process.argv[2];
if (!uri) { console.error('usage: node basic.js URI'); process.exit(2); }

function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
  console.log('ok ' + what);
}

async function main() {
  const c = new Client({ connectionString: uri });
  await c.connect();

  // parameterised queries with several types
  let r = await c.query('SELECT $1::int + $2::int AS s, $3::text AS t, $4::jsonb AS j, $5::bytea AS b',
    [40, 2, 'héllo wörld', JSON.stringify({ a: [1, 2] }), Buffer.from([0, 1, 2, 255])]);
  check(r.rows[0].s === 42, 'int parameters');
  check(r.rows[0].t === 'héllo wörld', 'text parameter (UTF-8)');
  check(JSON.stringify(r.rows[0].j) === '{"a":[1,2]}', 'jsonb parameter');
  check(Buffer.compare(r.rows[0].b, Buffer.from([0, 1, 2, 255])) === 0, 'bytea parameter');
  r = await c.query('SELECT $1::text IS NULL AS n', [null]);
  check(r.rows[0].n === true, 'NULL parameter');

  // named prepared statement, executed many times
  await c.query('DROP TABLE IF EXISTS relay_node');
  await c.query('CREATE TABLE relay_node (id int primary key, v text)');
  for (let i = 0; i < 200; i++) {
    await c.query({ name: 'ins', text: 'INSERT INTO relay_node VALUES ($1, $2)', values: [i, 'v' + i] });
  }
  r = await c.query({ name: 'get', text: 'SELECT v FROM relay_node WHERE id = $1', values: [123] });
  check(r.rows[0].v === 'v123', 'prepared statement executed 200 times');
  r = await c.query({ name: 'get', text: 'SELECT v FROM relay_node WHERE id = $1', values: [7] });
  check(r.rows[0].v === 'v7', 'prepared statement reused');

  // transactions: rollback discards, commit keeps
  await c.query('BEGIN');
  await c.query('INSERT INTO relay_node VALUES (1000, $1)', ['rolled back']);
  await c.query('ROLLBACK');
  await c.query('BEGIN');
  await c.query('INSERT INTO relay_node VALUES (1001, $1)', ['committed']);
  await c.query('COMMIT');
  r = await c.query('SELECT array_agg(id ORDER BY id) AS ids FROM relay_node WHERE id >= 1000');
  check(JSON.stringify(r.rows[0].ids) === '[1001]', 'rollback discarded, commit kept');

  // an error inside a transaction, then recovery
  await c.query('BEGIN');
  let code = null;
  try { await c.query('INSERT INTO relay_node VALUES (1, $1)', ['dup']); } catch (e) { code = e.code; }
  check(code === '23505', 'unique violation reported as 23505');
  code = null;
  try { await c.query('SELECT 1'); } catch (e) { code = e.code; }
  check(code === '25P02', 'aborted transaction reported as 25P02');
  await c.query('ROLLBACK');
  r = await c.query('SELECT count(*)::int AS n FROM relay_node');
  check(r.rows[0].n === 201, 'session usable after error (201 rows)');

  // a multi-megabyte result
  r = await c.query("SELECT repeat('z', 8 * 1024 * 1024) AS big");
  check(r.rows[0].big.length === 8 * 1024 * 1024, '8 MB value');

  // a pool of parallel connections
  const pool = new Pool({ connectionString: uri, max: 20 });
  const jobs = [];
  for (let i = 0; i < 100; i++) jobs.push(pool.query('SELECT $1::int * 2 AS d, pg_backend_pid() AS pid', [i]));
  const res = await Promise.all(jobs);
  check(res.every((x, i) => x.rows[0].d === i * 2), '100 queries over a pool of 20 connections');
  await pool.end();

  await c.query('DROP TABLE relay_node');
  await c.end();
}

main().then(() => process.exit(0)).catch((e) => {
  console.log('FAIL ' + (e.code ? e.code + ' ' : '') + e.message);
  process.exit(1);
});
