// A web site that logs users in with Assent: a login form, then a page
// showing the QR code of a one-time password and the live status, then
// "Logged in as alice" once the user's device accepted — or the refusal.
//
// The backend binds each login to the browser session that shows it (the
// transaction's `binding` is SHA-256 of the session id), waits for the
// outcome with WaitTransaction (no polling of Assent), and logs the user in
// only after checking the binding and the server's Ed25519 signature over
// the outcome event with a key from ListServerKeys (docs/relying-party.md).
//
// Configuration (environment): ASSENT_SERVER (host:port, default
// 127.0.0.1:50051), ASSENT_API_KEY (required), PORT (default 3000),
// SITE_NAME (default "Example Shop").

import crypto from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import QRCode from 'qrcode';

const here = path.dirname(fileURLToPath(import.meta.url));
const SERVER = process.env.ASSENT_SERVER ?? '127.0.0.1:50051';
const API_KEY = process.env.ASSENT_API_KEY;
const PORT = Number(process.env.PORT ?? 3000);
const SITE = process.env.SITE_NAME ?? 'Example Shop';
if (!API_KEY) {
  console.error('error: set ASSENT_API_KEY to the API key of your application (assent-server app create)');
  process.exit(2);
}

// The repository's .proto files, as any relying party would use them.
const definition = protoLoader.loadSync('assent/v1/relying_party.proto', {
  includeDirs: [path.join(here, '../../proto/proto')],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
});
const assent = grpc.loadPackageDefinition(definition).assent.v1;
const client = new assent.RelyingPartyService(SERVER, grpc.credentials.createInsecure());

function call(method, request, deadlineMs = 10_000) {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${API_KEY}`);
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + deadlineMs }, (error, answer) =>
      error ? reject(error) : resolve(answer));
  });
}

// ---- Verifying the outcome (docs/relying-party.md, "Byte layouts") ----

function field(value) {
  const bytes = Buffer.isBuffer(value) ? value : Buffer.from(value, 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

function eventBytes(event) {
  const cursor = Buffer.alloc(8);
  cursor.writeBigUInt64BE(BigInt(event.cursor));
  const at = event.occurred_at;
  const micros = BigInt(at.seconds) * 1_000_000n + BigInt(Math.trunc(at.nanos / 1000));
  const time = Buffer.alloc(8);
  time.writeBigInt64BE(micros);
  return Buffer.concat([
    field('assent.v1.event'), field(event.application_id), field(cursor), field(event.type),
    field(event.transaction_id), field(event.user_id), field(event.device_id),
    field(event.reason), field(Buffer.from([event.fraud_reported ? 1 : 0])),
    field(Buffer.from(event.binding)), field(time),
  ]);
}

let serverKeys = new Map();
async function serverKey(keyId) {
  if (!serverKeys.has(keyId)) {
    // An unknown key id: the server may have rotated; fetch the list again.
    const { keys } = await call('ListServerKeys', {});
    serverKeys = new Map(keys.map((k) => [k.key_id, Buffer.from(k.public_key)]));
  }
  const raw = serverKeys.get(keyId);
  if (!raw) return null;
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), raw]);
  return crypto.createPublicKey({ key: spki, format: 'der', type: 'spki' });
}

/** Why the outcome cannot be trusted, or null when it can. */
async function distrust(session, transaction, event) {
  if (!event) return 'the outcome event is missing';
  if (!Buffer.from(transaction.binding).equals(session.binding)) {
    return 'the login was started by another browser session';
  }
  if (!Buffer.from(event.binding).equals(session.binding)
    || event.transaction_id !== transaction.transaction_id
    || event.state !== transaction.state) {
    return 'the outcome event does not match the login';
  }
  const key = await serverKey(event.key_id);
  if (!key) return `the event is signed by an unknown key ${event.key_id}`;
  if (!crypto.verify(null, eventBytes(event), key, Buffer.from(event.signature))) {
    return 'the outcome event signature does not verify';
  }
  return null;
}

// ---- Sessions ----

const sessions = new Map();
function session(request, response) {
  const cookie = request.headers.cookie ?? '';
  const id = /(?:^|;\s*)sid=([0-9a-f]{64})/.exec(cookie)?.[1];
  if (id && sessions.has(id)) return sessions.get(id);
  const fresh = crypto.randomBytes(32).toString('hex');
  const created = { id: fresh, binding: crypto.createHash('sha256').update(fresh).digest() };
  sessions.set(fresh, created);
  response.setHeader('Set-Cookie', `sid=${fresh}; HttpOnly; SameSite=Lax; Path=/`);
  return created;
}

// ---- Pages ----

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (title, body) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<style>body{font-family:sans-serif;max-width:32rem;margin:3rem auto;text-align:center}
img{image-rendering:pixelated;width:320px;height:320px}</style></head>
<body><h1>${escape(SITE)}</h1>${body}</body></html>`;

function loginForm(notice = '') {
  return page(`Log in — ${SITE}`, `${notice ? `<p id="notice">${escape(notice)}</p>` : ''}
<form method="post" action="/login">
  <label>User name <input name="user" required maxlength="128" autofocus></label>
  <button type="submit">Log in with your device</button>
</form>`);
}

const waitPage = page(`Scan to log in — ${SITE}`, `
<p>Scan this code with your Assent device.</p>
<img id="qr" src="/qr.png" alt="QR code to scan">
<p id="status">Waiting for your device…</p>
<script>
async function follow() {
  for (;;) {
    const answer = await fetch('/status').then((r) => r.json()).catch(() => null);
    if (!answer) { await new Promise((r) => setTimeout(r, 1000)); continue; }
    document.getElementById('status').textContent = answer.message;
    if (answer.done) { document.title = answer.message; return; }
  }
}
follow();
</script>`);

async function readForm(request) {
  let body = '';
  for await (const chunk of request) {
    body += chunk;
    if (body.length > 4096) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

async function status(s) {
  if (s.user) return { done: true, state: 'ACCEPTED', message: `Logged in as ${s.user}` };
  if (!s.transactionId) return { done: true, state: 'NONE', message: 'No login in progress' };
  const answer = await call('WaitTransaction', { transaction_id: s.transactionId, timeout_ms: 20_000 }, 30_000);
  const tx = answer.transaction;
  if (answer.timed_out) return { done: false, state: tx.state, message: 'Waiting for your device…' };
  s.transactionId = null;
  if (tx.state !== 'TRANSACTION_STATE_ACCEPTED') {
    const what = tx.state.replace('TRANSACTION_STATE_', '').toLowerCase();
    const reason = tx.reason ? ` (${tx.reason})` : '';
    return { done: true, state: tx.state, message: `Login refused: ${what}${reason}` };
  }
  const problem = await distrust(s, tx, answer.last_event);
  if (problem) return { done: true, state: 'UNTRUSTED', message: `Login refused: ${problem}` };
  s.user = tx.user_id;
  return { done: true, state: tx.state, message: `Logged in as ${s.user}` };
}

const server = http.createServer(async (request, response) => {
  const s = session(request, response);
  const url = new URL(request.url, 'http://localhost');
  const send = (code, type, body) => {
    response.writeHead(code, { 'Content-Type': type, 'Cache-Control': 'no-store' });
    response.end(body);
  };
  try {
    if (request.method === 'GET' && url.pathname === '/') {
      return send(200, 'text/html; charset=utf-8', s.user
        ? page(SITE, `<p id="status">Logged in as ${escape(s.user)}</p>`)
        : loginForm());
    }
    if (request.method === 'POST' && url.pathname === '/login') {
      const user = (await readForm(request)).get('user')?.trim() ?? '';
      const created = await call('CreateOtpAuthentication', {
        message: `Log in to ${SITE} as ${user}?`,
        user_id: user,
        context: { browser: (request.headers['user-agent'] ?? 'a browser').slice(0, 200) },
        binding: s.binding,
      });
      Object.assign(s, { transactionId: created.transaction_id, qr: created.qr_payload, user: null });
      response.writeHead(303, { Location: '/wait' });
      return response.end();
    }
    if (request.method === 'GET' && url.pathname === '/wait') {
      return send(200, 'text/html; charset=utf-8', waitPage);
    }
    if (request.method === 'GET' && url.pathname === '/qr.png' && s.qr) {
      return send(200, 'image/png', await QRCode.toBuffer(s.qr, { margin: 4, scale: 8 }));
    }
    if (request.method === 'GET' && url.pathname === '/status') {
      return send(200, 'application/json', JSON.stringify(await status(s)));
    }
    return send(404, 'text/plain', 'not found');
  } catch (error) {
    // gRPC errors carry a message meant for people; show it on the form.
    console.error(`request failed: ${error.message}`);
    return send(502, 'text/html; charset=utf-8', loginForm(`Assent refused: ${error.details ?? error.message}`));
  }
});

server.listen(PORT, '127.0.0.1', () => {
  console.log(`${SITE} login page on http://127.0.0.1:${server.address().port}/ (Assent at ${SERVER})`);
});
