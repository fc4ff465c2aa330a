// Drives Assent's OpenID CIBA provider with panva's openid-client (v6) and
// verifies ID tokens with jose, for tests/tests/ciba.rs. One command per
// run; the result is one JSON line on stdout.
//
//   node ciba.mjs discover ISSUER
//   node ciba.mjs login ISSUER CLIENT_ID SECRET USER ALG MESSAGE
//   node ciba.mjs slow-down ISSUER CLIENT_ID SECRET USER
//   node ciba.mjs replica ISSUER CLIENT_ID SECRET USER ALG MESSAGE OTHER_BASE
//   node ciba.mjs ping ISSUER CLIENT_ID SECRET USER ALG MESSAGE PORT [FAILS]
//   node ciba.mjs push ISSUER CLIENT_ID SECRET USER ALG MESSAGE PORT [FAILS]
//
// ping and push listen on 127.0.0.1:PORT (the client's notification
// endpoint, path /cb), answer the first FAILS notifications 503, and
// report every notification they received.

import * as client from 'openid-client';
import * as jose from 'jose';
import { createServer } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';

const [command, issuer, clientId, secret, user, alg, message, port, fails] =
  process.argv.slice(2);

async function configuration() {
  const metadata = alg ? { id_token_signed_response_alg: alg } : undefined;
  return client.discovery(
    new URL(issuer),
    clientId ?? 'none',
    metadata,
    secret ? client.ClientSecretBasic(secret) : client.None(),
    { execute: [client.allowInsecureRequests] },
  );
}

async function discover() {
  const config = await configuration();
  return { metadata: config.serverMetadata() };
}

async function login() {
  const config = await configuration();
  const started = await client.initiateBackchannelAuthentication(config, {
    scope: 'openid',
    login_hint: user,
    binding_message: message,
  });
  try {
    const tokens = await client.pollBackchannelAuthenticationGrant(config, started);
    const jwks = jose.createRemoteJWKSet(new URL(config.serverMetadata().jwks_uri));
    const { payload, protectedHeader } = await jose.jwtVerify(tokens.id_token, jwks, {
      issuer,
      audience: clientId,
      algorithms: [alg],
    });
    return {
      ok: true,
      auth_req_id: started.auth_req_id,
      interval: started.interval,
      token_type: tokens.token_type,
      has_access_token: typeof tokens.access_token === 'string',
      header: protectedHeader,
      claims: payload,
      client_claims: tokens.claims(),
    };
  } catch (error) {
    return { ok: false, auth_req_id: started.auth_req_id, error: error.error ?? String(error) };
  }
}

// Two token requests in a row, straight to the endpoint: the second comes
// sooner than `interval` after the first.
async function slowDown() {
  const config = await configuration();
  const started = await client.initiateBackchannelAuthentication(config, {
    scope: 'openid',
    login_hint: user,
  });
  const basic = Buffer.from(
    `${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`,
  ).toString('base64');
  const poll = async () => {
    const response = await fetch(config.serverMetadata().token_endpoint, {
      method: 'POST',
      headers: {
        authorization: `Basic ${basic}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({
        grant_type: 'urn:openid:params:grant-type:ciba',
        auth_req_id: started.auth_req_id,
      }),
    });
    return { status: response.status, body: await response.json() };
  };
  const first = await poll();
  const second = await poll();
  return { interval: started.interval, first, second };
}

// Starts at ISSUER, then polls another replica's token endpoint (at
// OTHER_BASE, passed as `port`) until the request is answered.
async function replica() {
  const config = await configuration();
  const started = await client.initiateBackchannelAuthentication(config, {
    scope: 'openid',
    login_hint: user,
    binding_message: message,
  });
  const basic = Buffer.from(
    `${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`,
  ).toString('base64');
  for (let round = 0; round < 30; round += 1) {
    await new Promise((resolve) => setTimeout(resolve, started.interval * 1000));
    const response = await fetch(`${port}/token`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${basic}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({
        grant_type: 'urn:openid:params:grant-type:ciba',
        auth_req_id: started.auth_req_id,
      }),
    });
    const body = await response.json();
    if (body.error === 'authorization_pending') continue;
    if (!body.id_token) return { ok: false, status: response.status, body };
    const { payload, protectedHeader } = await verified(config, body.id_token);
    return { ok: true, auth_req_id: started.auth_req_id, header: protectedHeader, claims: payload };
  }
  return { ok: false, error: 'still pending' };
}

// The client's notification endpoint: collects what it is sent, answering
// the first `failures` with 503 and then 204, until `done(received)` says
// enough.
function receiver(failures, done) {
  const received = [];
  let settle;
  const finished = new Promise((resolve) => { settle = resolve; });
  const server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => { body += chunk; });
    request.on('end', () => {
      let parsed = null;
      try { parsed = JSON.parse(body); } catch { parsed = body; }
      const failing = received.length < failures;
      received.push({
        path: request.url,
        authorization: request.headers.authorization ?? null,
        content_type: request.headers['content-type'] ?? null,
        body: parsed,
        answered: failing ? 503 : 204,
      });
      response.statusCode = failing ? 503 : 204;
      response.end();
      if (!failing && done(received)) settle();
    });
  });
  const listening = new Promise((resolve) => server.listen(Number(port), '127.0.0.1', resolve));
  const timeout = setTimeout(settle, 45_000);
  return {
    listening,
    received,
    finished: finished.then(() => { clearTimeout(timeout); server.close(); }),
  };
}

async function verified(config, idToken) {
  const jwks = jose.createRemoteJWKSet(new URL(config.serverMetadata().jwks_uri));
  return jose.jwtVerify(idToken, jwks, { issuer, audience: clientId, algorithms: [alg] });
}

// OIDC Core §3.1.3.6: the left half of the access token's hash.
function atHash(accessToken) {
  const hash = alg === 'EdDSA' ? 'sha512' : 'sha256';
  const digest = createHash(hash).update(accessToken).digest();
  return digest.subarray(0, digest.length / 2).toString('base64url');
}

async function notified(mode) {
  const config = await configuration();
  const token = randomBytes(24).toString('base64url');
  const endpoint = receiver(Number(fails ?? 0), (received) => received.length > 0);
  await endpoint.listening;
  const started = await client.initiateBackchannelAuthentication(config, {
    scope: 'openid',
    login_hint: user,
    binding_message: message,
    client_notification_token: token,
  });
  await endpoint.finished;
  const last = endpoint.received.at(-1);
  const result = {
    auth_req_id: started.auth_req_id,
    token_matches: endpoint.received.every((r) => r.authorization === `Bearer ${token}`),
    received: endpoint.received,
  };
  if (!last || last.answered !== 204) return { ok: false, ...result };
  if (mode === 'ping') {
    // §10.2: the ping names the request; the tokens come from the token
    // endpoint, as in poll mode.
    try {
      const tokens = await client.genericGrantRequest(
        config,
        'urn:openid:params:grant-type:ciba',
        { auth_req_id: last.body.auth_req_id },
      );
      const { payload, protectedHeader } = await verified(config, tokens.id_token);
      return { ok: true, ...result, header: protectedHeader, claims: payload };
    } catch (error) {
      return { ok: false, ...result, error: error.error ?? String(error) };
    }
  }
  // §10.3.1: the push carries the tokens, or the error.
  if (last.body.error) return { ok: false, ...result, error: last.body.error };
  const { payload, protectedHeader } = await verified(config, last.body.id_token);
  return {
    ok: true,
    ...result,
    header: protectedHeader,
    claims: payload,
    at_hash_matches: payload.at_hash === atHash(last.body.access_token),
  };
}

const commands = {
  discover,
  login,
  'slow-down': slowDown,
  replica,
  ping: () => notified('ping'),
  push: () => notified('push'),
};
try {
  const run = commands[command];
  if (!run) throw new Error(`unknown command ${command}`);
  console.log(JSON.stringify(await run()));
} catch (error) {
  console.log(JSON.stringify({ failed: String(error), error: error.error, cause: String(error.cause ?? '') }));
  process.exitCode = 1;
}
