// The FeathersJS v5 client with the DPoP hook of docs/dpop.md (kept the
// same as there), against caddy-token-auth: authenticate with a proof,
// a guarded service, reAuthenticate(true), a refresh, logout, and the
// refusal of the token after it. Run by dpop_interop_test.go with
// BASE_URL, USERNAME and PASSWORD; prints "ok: feathers dpop hook" at the end.
import assert from 'node:assert/strict'
import { feathers } from '@feathersjs/feathers'
import rest from '@feathersjs/rest-client'
import authClient from '@feathersjs/authentication-client'
import * as DPoP from 'dpop'

const base = process.env.BASE_URL
const keypair = await DPoP.generateKeyPair('ES256', { extractable: false })
const dpopKeyPair = async () => keypair // in a browser: from IndexedDB (docs/dpop.md)

// --- as in docs/dpop.md ---
const app = feathers()
app.configure(rest(base).fetch(fetch))
app.configure(authClient.default({ scheme: 'DPoP', storage: new authClient.MemoryStorage() }))

const methods = { find: 'GET', get: 'GET', create: 'POST', update: 'PUT', patch: 'PATCH', remove: 'DELETE' }

// signs a DPoP proof for every REST call (dpopKeyPair() as in the SPA example above)
app.hooks({
  before: {
    all: [
      async (context) => {
        const path = context.id == null ? context.path : `${context.path}/${encodeURIComponent(context.id)}`
        // the token the call presents: its ath goes into the proof (none for a login or a refresh)
        const signIn = context.path === 'authentication' && context.method === 'create'
        const accessToken = signIn
          ? (context.data?.strategy === 'jwt' ? context.data.accessToken : undefined) // reAuthenticate
          : context.params.accessToken // set by the authentication client on every other call
        const proof = await DPoP.generateProof(await dpopKeyPair(), `${base}/${path}`, methods[context.method],
          undefined, accessToken)
        context.params.headers = { ...context.params.headers, DPoP: proof }
      },
    ],
  },
})
// --- end ---

const login = await app.authenticate({ strategy: 'local', username: process.env.USERNAME, password: process.env.PASSWORD })
assert.equal(login.token_type, 'DPoP', 'login is bound')
const jkt = login.authentication.payload.cnf.jkt

const me = await app.service('api/whoami').find()
assert.equal(me.jkt, jkt, 'guarded service sees the binding')

const again = await app.reAuthenticate(true)
assert.equal(again.accessToken, login.accessToken, 'reAuthenticate(true)')

const refreshed = await app.service('authentication').create({ action: 'refresh', refresh_token: login.refreshToken })
assert.equal(refreshed.token_type, 'DPoP', 'refresh is bound')
await app.authentication.setAccessToken(refreshed.accessToken)
await app.reAuthenticate(true)
assert.equal((await app.service('api/whoami').find()).jkt, jkt, 'refreshed token')

await app.logout()
await assert.rejects(
  app.service('api/whoami').find({ headers: { Authorization: `DPoP ${refreshed.accessToken}` } }),
  (err) => err.code === 401,
  'after logout the token is refused',
)
console.log('ok: feathers dpop hook')
