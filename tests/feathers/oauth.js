// What a FeathersJS v5 single-page app does when an identity provider
// sign-in (mode=fragment) sends the browser back to it: the client's
// reAuthenticate() takes the access token from window.location's hash
// (removing it), authenticates with strategy "jwt", and uses it on a
// guarded service; an error in the hash is an OauthError. Run by
// idp_e2e_test.go against a real Caddy:
//   BASE_URL=http://127.0.0.1:PORT HASH='#access_token=...' [GUARDED=private/whoami] node oauth.js
'use strict';

const assert = require('node:assert/strict');
const { feathers } = require('@feathersjs/feathers');
const rest = require('@feathersjs/rest-client');
const authClient = require('@feathersjs/authentication-client');

const { BASE_URL, HASH, GUARDED = 'private/whoami' } = process.env;

function client() {
  return feathers()
    .configure(rest(BASE_URL).fetch(fetch))
    .configure(authClient.default({ storage: new authClient.MemoryStorage() }));
}

async function main() {
  assert.ok(BASE_URL && HASH, 'BASE_URL and HASH are required');
  globalThis.window = { location: { hash: HASH } };

  console.log('step: reAuthenticate() from the location hash');
  const app = client();
  const auth = await app.reAuthenticate();
  assert.ok(auth.accessToken, 'authenticated with the token from the hash');
  assert.equal(auth.authentication.strategy, 'jwt');
  assert.equal(auth.authentication.payload.idp, 'test', 'the token says which provider');
  assert.ok(!window.location.hash.includes('access_token='), 'the client removed the token from the hash');

  console.log('step: guarded service with it');
  const who = await app.service(GUARDED).find();
  assert.equal(who.id, auth.user.id);
  assert.equal(who.idp, 'test');

  console.log('step: an error in the hash');
  window.location.hash = '#error=idp_failed';
  await assert.rejects(client().reAuthenticate(), (err) => err.name === 'OauthError' && err.message === 'idp_failed');
  console.log('ok: feathers oauth callback complete');
}

main().catch((err) => {
  console.error('FAIL:', err);
  process.exit(1);
});
