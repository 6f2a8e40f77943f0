// node-postgres reports the backend's own process id: client.processID is
// pg_backend_pid(), the session's pg_stat_activity.pid and the PID a
// notification names as its sender.
// usage: node tests/node/backend_pid.js URI   -> prints "ok ..." lines, exits 0
'use strict';
const { Client } = require('pg');

const uri = process.argv[2];
if (!uri) { console.error('usage: node backend_pid.js URI'); process.exit(2); }

function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
  console.log('ok ' + what);
}

async function main() {
  const c = new Client({ connectionString: uri, application_name: 'pgt_node_backend_pid' });
  await c.connect();
  const reported = c.processID;
  let r = await c.query('SELECT pg_backend_pid() AS pid');
  check(r.rows[0].pid === reported, 'processID ' + reported + ' is pg_backend_pid() ' + r.rows[0].pid);
  r = await c.query("SELECT pid FROM pg_stat_activity WHERE application_name = 'pgt_node_backend_pid'");
  check(r.rows.length === 1 && r.rows[0].pid === reported, 'pg_stat_activity.pid is processID');

  const note = new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no notification within 10 s')), 10000);
    c.once('notification', (n) => { clearTimeout(t); resolve(n); });
  });
  await c.query('LISTEN pgt_node_pid');
  await c.query("NOTIFY pgt_node_pid, 'self'");
  const n = await note;
  check(n.processId === reported, 'notification sender ' + n.processId + ' is processID');
  await c.end();
}

main().then(() => process.exit(0)).catch((e) => {
  console.log('FAIL ' + (e.code ? e.code + ' ' : '') + e.message);
  process.exit(1);
});
