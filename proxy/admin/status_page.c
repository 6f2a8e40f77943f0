/* The status page behind GET / on the admin port: one HTML document with
 * its CSS and script inline, no other file, nothing fetched but the admin
 * API itself. Every second the script reads GET /status and GET
 * /migrations/current and shows the migration (phase, progress, rate,
 * ETA, throttle, the last cutover and its blockers), this proxy's holds
 * and sessions per version, and the fleet (leases, heartbeat ages,
 * sessions that bypass every proxy). Its buttons ask for confirmation and
 * call the existing endpoints: the throttle (pause, resume), complete and
 * rollback.
 *
 * The token: the page asks for it (or takes ?token= once, then takes it
 * off the URL), keeps it in sessionStorage and sends it as a bearer
 * header; it is never in a cookie nor in the document. Everything the API
 * returns is untrusted text (migration names, SQL, application names): the
 * script only ever sets textContent. The Content-Security-Policy allows
 * exactly the inline style and script by their SHA-256, requests to this
 * origin, and nothing else (no frames around it, no form posts). */
#include "status_page.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

/* The document is written with single quotes only, so that it reads as it
 * is in these literals. */
static const char page_style[] =
    "body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2430; background: #f4f6f8; }\n"
    "header { background: #1d2430; color: #fff; padding: 8px 16px; display: flex; gap: 16px; align-items: baseline; }\n"
    "header h1 { font-size: 18px; margin: 0; }\n"
    "header .grow { flex: 1; }\n"
    "main, #login { padding: 12px 16px; }\n"
    "section { background: #fff; border: 1px solid #d5dae0; border-radius: 6px; padding: 10px 14px; margin-bottom: 12px; }\n"
    "h2 { font-size: 15px; margin: 14px 0 6px; }\n"
    "section > h2:first-child { margin-top: 0; }\n"
    "dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0; }\n"
    "dt { color: #5b6574; }\n"
    "dd { margin: 0; font-variant-numeric: tabular-nums; }\n"
    "progress { width: 100%; height: 18px; margin: 6px 0; }\n"
    "table { border-collapse: collapse; width: 100%; }\n"
    "th, td { text-align: left; padding: 3px 8px; border-bottom: 1px solid #e6e9ed; font-variant-numeric: tabular-nums; }\n"
    "th { color: #5b6574; font-weight: normal; }\n"
    "button { font: inherit; padding: 4px 12px; margin-right: 6px; border-radius: 4px; border: 1px solid #8a94a3; background: #fff; cursor: pointer; }\n"
    "button:disabled { opacity: .45; cursor: default; }\n"
    "button.danger { border-color: #b3261e; color: #b3261e; }\n"
    ".error { color: #b3261e; }\n"
    ".muted { color: #5b6574; }\n"
    "ul { margin: 0; padding-left: 18px; }\n"
    "code { font: 12px/1.4 ui-monospace, monospace; white-space: pre-wrap; word-break: break-all; }\n";

static const char page_body[] =
    "<header><h1>pgtandem</h1><span class='grow muted' id='summary'></span><span class='muted'>updated <span id='updated'>never</span></span><button id='forget' type='button' hidden>Forget token</button></header>\n"
    "<form id='login' hidden>\n"
    "<section><h2>Admin token</h2>\n"
    "<p class='muted'>This admin API needs its bearer token. It is kept in this tab only (sessionStorage) and sent as an Authorization header.</p>\n"
    "<input id='token-input' type='password' autocomplete='current-password' required> <button type='submit'>Open</button>\n"
    "<p class='error' id='login-error'></p></section>\n"
    "</form>\n"
    "<main id='main' hidden>\n"
    "<p class='error' id='conn-error'></p>\n"
    "<section id='migration'><h2>Migration <span id='mig-name'></span></h2>\n"
    "<dl><dt>phase</dt><dd id='phase'></dd><dt>error</dt><dd id='mig-error' class='error'></dd></dl>\n"
    "<progress id='bar' max='1' value='0'></progress>\n"
    "<dl><dt>rows</dt><dd><span id='rows-done'></span> / <span id='rows-total'></span> (<span id='percent'></span>)</dd>\n"
    "<dt>rate</dt><dd id='rate'></dd><dt>ETA</dt><dd id='eta'></dd>\n"
    "<dt>throttle</dt><dd id='throttle'></dd><dt>limits</dt><dd id='limits'></dd>\n"
    "<dt>last cutover</dt><dd id='cutover'></dd></dl>\n"
    "<p><button id='btn-pause' type='button'>Pause backfill</button><button id='btn-resume' type='button'>Resume backfill</button><button id='btn-complete' type='button'>Complete</button><button id='btn-rollback' type='button' class='danger'>Roll back</button></p>\n"
    "<p id='action-result'></p>\n"
    "<h2>Migrations in flight</h2>\n"
    "<table><thead><tr><th>migration</th><th>status</th><th>engine</th><th>sessions here</th><th>a release declaring it sees</th></tr></thead><tbody id='in-flight'></tbody></table>\n"
    "<h2>Blockers of the last cutover attempt</h2><ul id='blockers'></ul>\n"
    "</section>\n"
    "<section><h2>This proxy</h2>\n"
    "<dl><dt>connections</dt><dd id='connections'></dd><dt>traffic held</dt><dd id='hold'></dd><dt>engine connection</dt><dd id='engine'></dd></dl>\n"
    "<h2>Sessions per version</h2>\n"
    "<table><thead><tr><th>version</th><th>sessions</th></tr></thead><tbody id='versions'></tbody></table>\n"
    "</section>\n"
    "<section><h2>Fleet <span class='muted' id='fleet-lease'></span></h2>\n"
    "<table><thead><tr><th>proxy</th><th>listen</th><th>admin</th><th>live</th><th>heartbeat age</th><th>sessions per version</th></tr></thead><tbody id='fleet'></tbody></table>\n"
    "<h2>Sessions bypassing every proxy</h2><ul id='bypassing'></ul>\n"
    "</section>\n"
    "</main>\n";

static const char page_script[] =
    "'use strict';\n"
    "const KEY = 'pgtandem.admin_token';\n"
    "const byId = (id) => document.getElementById(id);\n"
    "let token = sessionStorage.getItem(KEY) || '';\n"
    "let timer = null;\n"
    "let acting = false;\n"
    "let lastAnswer = null;\n"
    "let mig = null;\n"
    "\n"
    "class NeedToken extends Error {}\n"
    "\n"
    "/* ?token=... once (a link from a runbook): kept in this tab, taken off the URL */\n"
    "(function tokenFromUrl() {\n"
    "  const q = new URLSearchParams(location.search);\n"
    "  if (q.has('token')) {\n"
    "    token = q.get('token');\n"
    "    sessionStorage.setItem(KEY, token);\n"
    "    history.replaceState(null, '', location.pathname);\n"
    "  }\n"
    "})();\n"
    "\n"
    "async function call(method, path, body) {\n"
    "  const headers = {};\n"
    "  if (token)\n"
    "    headers['Authorization'] = 'Bearer ' + token;\n"
    "  if (body !== undefined)\n"
    "    headers['Content-Type'] = 'application/json';\n"
    "  const r = await fetch(path, {method: method, headers: headers, cache: 'no-store', credentials: 'omit',\n"
    "                               body: body === undefined ? undefined : JSON.stringify(body)});\n"
    "  if (r.status === 401)\n"
    "    throw new NeedToken();\n"
    "  let data = null;\n"
    "  try { data = await r.json(); } catch (e) { data = null; }\n"
    "  return {status: r.status, data: data};\n"
    "}\n"
    "\n"
    "function put(id, v) {\n"
    "  byId(id).textContent = v === null || v === undefined || v === '' ? '-' : String(v);\n"
    "}\n"
    "\n"
    "function duration(s) {\n"
    "  if (!(s > 0))\n"
    "    return '-';\n"
    "  s = Math.round(s);\n"
    "  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;\n"
    "  return (h ? h + 'h ' : '') + (h || m ? m + 'm ' : '') + r + 's';\n"
    "}\n"
    "\n"
    "function describe(o) {\n"
    "  if (o === null || typeof o !== 'object')\n"
    "    return String(o);\n"
    "  return Object.keys(o).map((k) => k + '=' + (typeof o[k] === 'string' ? o[k] : JSON.stringify(o[k]))).join('  ');\n"
    "}\n"
    "\n"
    "function fillList(id, items, empty) {\n"
    "  const ul = byId(id);\n"
    "  ul.replaceChildren();\n"
    "  for (const it of items || []) {\n"
    "    const li = document.createElement('li');\n"
    "    const code = document.createElement('code');\n"
    "    code.textContent = describe(it);\n"
    "    li.appendChild(code);\n"
    "    ul.appendChild(li);\n"
    "  }\n"
    "  if (!ul.children.length) {\n"
    "    const li = document.createElement('li');\n"
    "    li.className = 'muted';\n"
    "    li.textContent = empty;\n"
    "    ul.appendChild(li);\n"
    "  }\n"
    "}\n"
    "\n"
    "function fillTable(id, rows) {\n"
    "  const tb = byId(id);\n"
    "  tb.replaceChildren();\n"
    "  for (const cells of rows) {\n"
    "    const tr = document.createElement('tr');\n"
    "    for (const c of cells) {\n"
    "      const td = document.createElement('td');\n"
    "      td.textContent = c === null || c === undefined ? '-' : String(c);\n"
    "      tr.appendChild(td);\n"
    "    }\n"
    "    tb.appendChild(tr);\n"
    "  }\n"
    "}\n"
    "\n"
    "function versionsText(v) {\n"
    "  return Object.keys(v || {}).map((k) => k + ': ' + v[k]).join(', ');\n"
    "}\n"
    "\n"
    "function renderStatus(st) {\n"
    "  const hold = st.hold || {};\n"
    "  put('connections', st.connections);\n"
    "  put('hold', hold.fenced ? 'fenced (' + (hold.detail || 'lease not renewed') + ')'\n"
    "      : st.paused || hold.held_sessions ? hold.reason + ', ' + hold.held_sessions + ' sessions held for ' + hold.for_ms + ' ms'\n"
    "      : 'no');\n"
    "  const eng = st.engine;\n"
    "  put('engine', !eng ? 'none (no --engine-db)' : eng.connected ? 'connected'\n"
    "      : eng.closed_while_idle ? 'closed while idle (opened when needed)' : 'not connected' +\n"
    "      (eng.last_error ? ': ' + eng.last_error : ''));\n"
    "  const v = st.versions || {};\n"
    "  fillTable('versions', Object.keys(v).map((k) => [k, v[k]]));\n"
    "  const f = st.fleet;\n"
    "  put('fleet-lease', f ? '(lease ' + f.lease_ms + ' ms, ' + (f.connected ? 'connected' : 'not connected') + ')' : '(none)');\n"
    "  fillTable('fleet', f ? (f.members || []).map((m) => [m.id + (m.id === f.id ? ' (this one)' : ''), m.listen, m.admin,\n"
    "                                                      m.live ? 'yes' : 'no', m.heartbeat_age_ms + ' ms',\n"
    "                                                      versionsText(m.sessions)]) : []);\n"
    "  fillList('bypassing', f ? f.bypassing : [], f ? 'none' : 'no fleet');\n"
    "  put('summary', st.connections + ' connections' + (st.paused ? ', paused' : '') +\n"
    "      (hold.fenced ? ', FENCED' : '') + (st.shutting_down ? ', shutting down' : ''));\n"
    "}\n"
    "\n"
    "function renderMigration(res) {\n"
    "  mig = res.status === 200 ? res.data : null;\n"
    "  const m = mig || {};\n"
    "  const b = m.backfill || {};\n"
    "  const s = b.settings || {};\n"
    "  put('mig-name', m.name);\n"
    "  put('phase', mig ? m.phase : res.status === 404 ? 'none' : res.status === 503 ? 'no engine database' : 'unknown (' + res.status + ')');\n"
    "  put('mig-error', m.error);\n"
    "  const bar = byId('bar');\n"
    "  bar.max = Math.max(1, b.est_total || 0);\n"
    "  bar.value = Math.min(bar.max, b.rows_done || 0);\n"
    "  put('rows-done', b.rows_done);\n"
    "  put('rows-total', b.est_total === undefined ? null : Math.round(b.est_total));\n"
    "  put('percent', b.percent === undefined ? null : b.percent.toFixed(1) + '%');\n"
    "  put('rate', b.rows_per_s === undefined ? null : Math.round(b.rows_per_s) + ' rows/s');\n"
    "  put('eta', duration(b.eta_s));\n"
    "  put('throttle', !mig ? null : s.paused ? 'paused' : b.throttle);\n"
    "  put('limits', !mig ? null : (s.max_rows_per_sec ? s.max_rows_per_sec + ' rows/s' : 'no row limit') + ', batch target ' +\n"
    "      s.target_ms + ' ms' + (s.max_app_p99_ms ? ', app p99 below ' + s.max_app_p99_ms + ' ms' : ''));\n"
    "  put('cutover', m.cutover ? describe(cutoverFigures(m.cutover)) : 'none yet');\n"
    "  fillList('blockers', blockersOf(m), 'none');\n"
    "  fillTable('in-flight', (m.in_flight || []).map((f) => [f.name, f.status, f.engine, f.sessions, f.path]));\n"
    "  /* which phases are in progress and what may be asked in each is the server's to say */\n"
    "  const active = mig && !!m.in_progress;\n"
    "  const allowed = m.allowed || {};\n"
    "  byId('btn-pause').disabled = acting || !active || !!s.paused;\n"
    "  byId('btn-resume').disabled = acting || !active || !s.paused;\n"
    "  byId('btn-complete').disabled = acting || !mig || !allowed.complete;\n"
    "  byId('btn-rollback').disabled = acting || !mig || !allowed.rollback;\n"
    "}\n"
    "\n"
    "/* The cutover's numbers; who blocked it is listed on its own. */\n"
    "function cutoverFigures(cut) {\n"
    "  const out = {};\n"
    "  for (const k of Object.keys(cut))\n"
    "    if (k !== 'blockers' && k !== 'bypassing')\n"
    "      out[k] = cut[k];\n"
    "  return out;\n"
    "}\n"
    "\n"
    "/* Who kept the last cutover attempt from its hold (sessions in a transaction,\n"
    " * sessions bypassing every proxy), who a step waits on for its lock, else\n"
    " * what the last answer to a button listed. */\n"
    "function blockersOf(m) {\n"
    "  const out = [];\n"
    "  const cut = m.cutover || {};\n"
    "  if (cut.blockers)\n"
    "    out.push('in a transaction: ' + cut.blockers);\n"
    "  if (cut.bypassing)\n"
    "    out.push('bypassing every proxy: ' + cut.bypassing);\n"
    "  for (const b of m.blocked_by || [])\n"
    "    out.push(b);\n"
    "  return out.length ? out : lastAnswerBlockers();\n"
    "}\n"
    "\n"
    "/* What the last complete refused on: the arrays of its answer (sessions, proxies). */\n"
    "function lastAnswerBlockers() {\n"
    "  if (!lastAnswer || typeof lastAnswer !== 'object')\n"
    "    return [];\n"
    "  let out = [];\n"
    "  for (const k of Object.keys(lastAnswer))\n"
    "    if (Array.isArray(lastAnswer[k]))\n"
    "      out = out.concat(lastAnswer[k].map((x) => (typeof x === 'object' && x ? Object.assign({kind: k}, x) : {kind: k, value: x})));\n"
    "  return out;\n"
    "}\n"
    "\n"
    "function showLogin(message) {\n"
    "  byId('main').hidden = true;\n"
    "  byId('login').hidden = false;\n"
    "  byId('forget').hidden = true;\n"
    "  put('login-error', message);\n"
    "  byId('login-error').hidden = !message;\n"
    "  byId('token-input').focus();\n"
    "}\n"
    "\n"
    "async function poll() {\n"
    "  clearTimeout(timer);\n"
    "  timer = null;\n"
    "  try {\n"
    "    const st = await call('GET', '/status');\n"
    "    const m = await call('GET', '/migrations/current');\n"
    "    if (st.status !== 200 || !st.data)\n"
    "      throw new Error('GET /status answered ' + st.status);\n"
    "    byId('login').hidden = true;\n"
    "    byId('main').hidden = false;\n"
    "    byId('forget').hidden = !token;\n"
    "    renderStatus(st.data);\n"
    "    renderMigration(m);\n"
    "    put('updated', new Date().toLocaleTimeString());\n"
    "    byId('conn-error').textContent = '';\n"
    "  } catch (e) {\n"
    "    if (e instanceof NeedToken) {\n"
    "      showLogin(token ? 'That token was refused.' : '');\n"
    "      return;\n"
    "    }\n"
    "    byId('conn-error').textContent = 'cannot reach the admin API: ' + e.message;\n"
    "  }\n"
    "  timer = setTimeout(poll, 1000);\n"
    "}\n"
    "\n"
    "async function act(label, question, path, body) {\n"
    "  if (acting || !window.confirm(question))\n"
    "    return;\n"
    "  acting = true;\n"
    "  put('action-result', label + ': waiting for the answer...');\n"
    "  try {\n"
    "    const r = await call('POST', path, body);\n"
    "    lastAnswer = r.data;\n"
    "    const d = r.data || {};\n"
    "    put('action-result', label + ': ' + r.status + (d.status ? ' ' + d.status : '') + (d.error ? ' - ' + d.error : ''));\n"
    "  } catch (e) {\n"
    "    put('action-result', label + ': ' + (e instanceof NeedToken ? 'the token was refused' : e.message));\n"
    "  }\n"
    "  acting = false;\n"
    "  poll();\n"
    "}\n"
    "\n"
    "function migName() {\n"
    "  return mig && mig.name ? mig.name : 'the migration';\n"
    "}\n"
    "\n"
    "byId('btn-pause').addEventListener('click', () => act('pause', 'Pause the backfill of ' + migName() + '?',\n"
    "                                                      '/migrations/current/throttle', {paused: true}));\n"
    "byId('btn-resume').addEventListener('click', () => act('resume', 'Resume the backfill of ' + migName() + '?',\n"
    "                                                       '/migrations/current/throttle', {paused: false}));\n"
    "byId('btn-complete').addEventListener('click', () => act('complete', 'Complete ' + migName() +\n"
    "    '? Sessions are held at their transaction boundaries while the old shape is dropped.', '/migrations/current/complete', {}));\n"
    "byId('btn-rollback').addEventListener('click', () => act('rollback', 'Roll back ' + migName() +\n"
    "    '? Everything it added is dropped.', '/migrations/current/rollback', {}));\n"
    "byId('login').addEventListener('submit', (e) => {\n"
    "  e.preventDefault();\n"
    "  token = byId('token-input').value;\n"
    "  byId('token-input').value = '';\n"
    "  sessionStorage.setItem(KEY, token);\n"
    "  poll();\n"
    "});\n"
    "byId('forget').addEventListener('click', () => {\n"
    "  sessionStorage.removeItem(KEY);\n"
    "  token = '';\n"
    "  clearTimeout(timer);\n"
    "  showLogin('');\n"
    "});\n"
    "poll();\n";

/* 'sha256-<base64>' of text, as a CSP source expression. */
static void csp_hash(const char *text, char *out, size_t cap)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
    if (EVP_Digest(text, strlen(text), md, &len, EVP_sha256(), NULL) != 1) {
        snprintf(out, cap, "'none'"); /* the page will not run: better than unsafe-inline */
        return;
    }
    EVP_EncodeBlock((unsigned char *)b64, md, (int)len);
    snprintf(out, cap, "'sha256-%s'", b64);
}

static void add_security_headers(struct evkeyvalq *h)
{
    char script[128], style[128], csp[512];
    csp_hash(page_script, script, sizeof script);
    csp_hash(page_style, style, sizeof style);
    snprintf(csp, sizeof csp,
             "default-src 'none'; script-src %s; style-src %s; connect-src 'self'; "
             "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
             script, style);
    evhttp_add_header(h, "Content-Security-Policy", csp);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    evhttp_add_header(h, "Cache-Control", "no-store");
}

void status_page_reply(struct evhttp_request *req, int code)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct evbuffer *out = evbuffer_new();
    if (!out) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    evhttp_add_header(h, "Content-Type", "text/html; charset=utf-8");
    add_security_headers(h);
    if (code == 401)
        evhttp_add_header(h, "WWW-Authenticate", "Bearer");
    evbuffer_add_printf(out,
                        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
                        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
                        "<title>pgtandem</title><style>%s</style></head><body>\n%s<script>%s</script></body></html>\n",
                        page_style, page_body, page_script);
    evhttp_send_reply(req, code, code == 200 ? "OK" : "Unauthorized", out);
    evbuffer_free(out);
}
