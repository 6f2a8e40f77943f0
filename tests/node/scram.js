// node-postgres against a server doing SCRAM over TLS (the proxy in auth
// "scram" mode). Takes one JSON argument:
//   {"host", "port", "user", "password", "database", "ca": path|null,
//    "servername": name|null, "channelBinding": bool}
// and prints one JSON line: {"ok": true, "user", "ssl", "answer"} or
// {"ok": false, "code", "message"}. Exit status 0 either way; 2 on bad usage.
'use strict';
const fs = require('fs');
const { Client } = require('pg');

async function main() {
  if (!process.argv[2]) { console.error('usage: node scram.js JSON'); process.exit(2); }
  const a = JSON.parse(process.argv[2]);
  const ssl = a.ca ? { ca: fs.readFileSync(a.ca), rejectUnauthorized: true } : { rejectUnauthorized: false };
  if (a.servername) ssl.servername = a.servername;
  const c = new Client({
    host: a.host, port: a.port, user: a.user, password: a.password, database: a.database,
    ssl, enableChannelBinding: Boolean(a.channelBinding), connectionTimeoutMillis: 20000,
  });
  try {
    await c.connect();
    const r = await c.query('SELECT current_user AS u, $1::int * 6 AS answer', [7]);
    const s = await c.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
    console.log(JSON.stringify({ ok: true, user: r.rows[0].u, answer: r.rows[0].answer, ssl: s.rows[0].ssl }));
  } catch (e) {
    console.log(JSON.stringify({ ok: false, code: e.code || null, message: String(e.message) }));
  } finally {
    try { await c.end(); } catch (e) { /* already closed */ }
  }
}

main().catch((e) => { console.log(JSON.stringify({ ok: false, code: null, message: String(e) })); });
