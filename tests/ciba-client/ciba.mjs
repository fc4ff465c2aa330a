// Drives Assent's OpenID CIBA provider with panva's openid-client (v6) and
// verifies ID tokens with jose, for tests/tests/ciba.rs. One command per
// run; the result is one JSON line on stdout.
//
//   node ciba.mjs discover ISSUER
//   node ciba.mjs login ISSUER CLIENT_ID SECRET USER ALG MESSAGE
//   node ciba.mjs slow-down ISSUER CLIENT_ID SECRET USER

import * as client from 'openid-client';
import * as jose from 'jose';

const [command, issuer, clientId, secret, user, alg, message] = process.argv.slice(2);

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

const commands = { discover, login, 'slow-down': slowDown };
try {
  const run = commands[command];
  if (!run) throw new Error(`unknown command ${command}`);
  console.log(JSON.stringify(await run()));
} catch (error) {
  console.log(JSON.stringify({ failed: String(error), error: error.error, cause: String(error.cause ?? '') }));
  process.exitCode = 1;
}
