// node-postgres named statements through transaction pooling: CLIENTS
// connections run the same named statements ROUNDS times each, at once, so
// their transactions land on whichever server connection is free. Every
// answer is checked; prints "ok <rows> <most backends one client saw>".
// usage: node tests/node/pooled.js URI CLIENTS ROUNDS
'use strict';
const { Client } = require('pg');

const [uri, clients, rounds] = [process.argv[2], +process.argv[3], +process.argv[4]];

async function one(k) {
  const c = new Client({ connectionString: uri });
  await c.connect();
  const pids = new Set();
  let rows = 0;
  for (let i = 0; i < rounds; i++) {
    const r = await c.query({ name: 'add', text: 'SELECT $1::int + 1 AS v, pg_backend_pid() AS pid', values: [i] });
    if (r.rows[0].v !== i + 1) throw new Error(`client ${k}: ${i} + 1 gave ${r.rows[0].v}`);
    pids.add(r.rows[0].pid);
    const t = await c.query({ name: 'txt', text: 'SELECT $1::text || $2::text AS s', values: ['a', String(k)] });
    if (t.rows[0].s !== 'a' + k) throw new Error(`client ${k}: concat gave ${t.rows[0].s}`);
    rows += 2;
  }
  await c.end();
  return [rows, pids.size];
}

Promise.all([...Array(clients).keys()].map(one)).then((res) => {
  console.log('ok ' + res.reduce((a, r) => a + r[0], 0) + ' ' + Math.max(...res.map((r) => r[1])));
}).catch((e) => { console.error(e.message); process.exit(1); });
