// end() called before the connection is up: node-postgres writes its
// Terminate message ahead of the startup packet. Postgres reads those bytes
// as a startup packet of an impossible length and closes without a word; a
// FATAL in their place would reject connect() while nobody waits on it
// any more, and the unhandled rejection ends the process. No handlers are
// installed on purpose: an application's process would crash the same way.
// usage: node tests/node/early_end.js URI   -> prints "ok ..." lines, exits 0
'use strict';
const { Client } = require('pg');

const uri = process.argv[2];
if (!uri) { console.error('usage: node early_end.js URI'); process.exit(2); }

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  for (let i = 0; i < 5; i++) {
    const c = new Client({ connectionString: uri });
    c.connect();
    await c.end();
  }
  console.log('ok end() right after connect() resolved, 5 times');
  await sleep(1000); // a late ErrorResponse would surface here as a crash
  console.log('ok no error reached the clients');

  const c = new Client({ connectionString: uri });
  await c.connect();
  const r = await c.query("SELECT 'still serving' AS s");
  await c.end();
  if (r.rows[0].s !== 'still serving') throw new Error('unexpected answer ' + r.rows[0].s);
  console.log('ok a normal connection works afterwards');
}

main().then(() => process.exit(0)).catch((e) => {
  console.log('FAIL ' + (e.code ? e.code + ' ' : '') + e.message);
  process.exit(1);
});
