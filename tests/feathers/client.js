// Drives caddy-token-auth with the real FeathersJS v5 client over REST
// (Node's global fetch). Run by e2e/feathers_test.go against a real Caddy:
//   BASE_URL=http://127.0.0.1:PORT EMAIL=... PASSWORD=... node client.js
// Every step checks what a Feathers app relies on; the first failure exits 1.
'use strict';

const assert = require('node:assert/strict');
const { feathers } = require('@feathersjs/feathers');
const rest = require('@feathersjs/rest-client');
const authClient = require('@feathersjs/authentication-client');

const { BASE_URL, EMAIL, PASSWORD, GUARDED = 'api/whoami' } = process.env;

function step(name) {
  console.log(`step: ${name}`);
}

async function expectRefused(promise, what) {
  try {
    await promise;
  } catch (err) {
    assert.equal(err.code, 401, `${what}: want code 401, got ${JSON.stringify(err)}`);
    assert.equal(err.name, 'NotAuthenticated', `${what}: want NotAuthenticated`);
    return err;
  }
  assert.fail(`${what}: the request was accepted`);
}

async function main() {
  assert.ok(BASE_URL && EMAIL && PASSWORD, 'BASE_URL, EMAIL and PASSWORD are required');
  const storage = new authClient.MemoryStorage();
  const client = feathers()
    .configure(rest(BASE_URL).fetch(fetch))
    .configure(authClient.default({ storage }));

  step('authenticate local');
  const login = await client.authenticate({ strategy: 'local', email: EMAIL, password: PASSWORD });
  assert.ok(login.accessToken, 'login answer has accessToken');
  assert.ok(login.refreshToken, 'login answer has refreshToken');
  assert.equal(login.authentication.strategy, 'local');
  assert.equal(login.user.email, EMAIL);
  assert.equal(login.user.password, undefined, 'the user object carries no password');
  assert.equal(await storage.getItem('feathers-jwt'), login.accessToken, 'client stored the access token');

  step('wrong password is NotAuthenticated');
  const other = feathers().configure(rest(BASE_URL).fetch(fetch)).configure(authClient.default({ storage: new authClient.MemoryStorage() }));
  await expectRefused(other.authenticate({ strategy: 'local', email: EMAIL, password: PASSWORD + 'x' }), 'wrong password');

  step('reAuthenticate(true)');
  const re = await client.reAuthenticate(true);
  assert.equal(re.accessToken, login.accessToken, 'reAuthenticate keeps the access token');
  assert.equal(re.authentication.strategy, 'jwt');
  assert.equal(re.user.id, login.user.id);

  step('guarded service with the stored token');
  const who = await client.service(GUARDED).find();
  assert.equal(who.id, login.user.id, 'the guard saw the logged-in user');
  assert.equal(who.sid, login.authentication.payload.sid, 'the guard saw the session');

  step('guarded service without a token is refused');
  const anon = feathers().configure(rest(BASE_URL).fetch(fetch));
  await expectRefused(anon.service(GUARDED).find(), 'no token');

  step('refresh {action:"refresh", refresh_token} through service("authentication").create');
  const refreshed = await client.service('authentication').create({ action: 'refresh', refresh_token: login.refreshToken });
  assert.ok(refreshed.accessToken && refreshed.refreshToken, 'refresh answers a new pair');
  assert.notEqual(refreshed.refreshToken, login.refreshToken, 'the refresh token rotated');
  assert.equal(refreshed.authentication.payload.sid, login.authentication.payload.sid, 'same session');
  assert.equal(refreshed.user.id, login.user.id);

  step('the client adopts the refreshed access token');
  await client.authentication.setAccessToken(refreshed.accessToken);
  const adopted = await client.reAuthenticate(true);
  assert.equal(adopted.accessToken, refreshed.accessToken);
  const who2 = await client.service(GUARDED).find();
  assert.equal(who2.id, login.user.id);

  step('logout()');
  const out = await client.logout();
  assert.ok(out, 'logout answers the authentication result');
  assert.equal(out.user.id, login.user.id);
  assert.equal(await storage.getItem('feathers-jwt'), undefined, 'client dropped the token');
  assert.equal(client.authentication.authenticated, false);

  step('the guarded route refuses the old access tokens');
  for (const [what, token] of [['login token', login.accessToken], ['refreshed token', refreshed.accessToken]]) {
    await expectRefused(anon.service(GUARDED).find({ headers: { Authorization: `Bearer ${token}` } }), what);
  }

  step('the rotated refresh token no longer refreshes');
  await expectRefused(anon.service('authentication').create({ action: 'refresh', refresh_token: refreshed.refreshToken }), 'refresh after logout');

  console.log('ok: feathers client session complete');
}

main().catch((err) => {
  console.error('FAIL:', err && err.stack ? err.stack : err, err && err.response ? `(HTTP ${err.response.status})` : '');
  process.exit(1);
});
