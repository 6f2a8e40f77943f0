// node-postgres named prepared statements across a pgtandem cutover.
// usage: node tests/node/cutover.js URI ID
// Prepares and runs {name: 'q1', text: 'SELECT * FROM checks WHERE id = $1'}
// a few times, prints "ready <columns>", waits for a line on stdin (the test
// runs `migrate complete` meanwhile), runs q1 again on the same connection
// and prints "after <columns>". Any error: message on stderr, exit 1.
'use strict';
const { Client } = require('pg');

const [uri, id] = process.argv.slice(2);
if (!uri || !id) { console.error('usage: node cutover.js URI ID'); process.exit(2); }

const q1 = { name: 'q1', text: 'SELECT * FROM checks WHERE id = $1', values: [Number(id)] };

function columns(r) { return r.fields.map((f) => f.name).join(','); }

async function runQ1(c, times) {
  let r;
  for (let i = 0; i < times; i++) {
    r = await c.query(q1);
    if (r.rows.length !== 1) throw new Error('q1 returned ' + r.rows.length + ' rows');
  }
  return r;
}

function nextLine() {
  return new Promise((resolve) => process.stdin.once('data', () => resolve()));
}

async function main() {
  const c = new Client({ connectionString: uri });
  await c.connect();
  let r = await runQ1(c, 5);
  console.log('ready ' + columns(r));
  await nextLine();
  r = await runQ1(c, 5);
  console.log('after ' + columns(r));
  await c.end();
  process.stdin.pause();
}

main().catch((e) => { console.error('error: ' + (e.code ? e.code + ' ' : '') + e.message); process.exit(1); });
