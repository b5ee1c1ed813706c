// Drives caddy-token-auth with DPoP proofs made by panva's `dpop` package
// (an independent RFC 9449 implementation on WebCrypto), for each
// algorithm it supports that the plugin accepts: login bound to the key,
// a guarded request, a refresh, the refreshed token, and the refusal of
// the bound token as a Bearer token. Run by dpop_interop_test.go with
// BASE_URL, USERNAME and PASSWORD set; prints one "ok:" line per algorithm.
import * as DPoP from 'dpop'

const base = process.env.BASE_URL
const endpoint = `${base}/authentication`
const resource = `${base}/api/whoami`

function check(cond, what, detail) {
  if (!cond) {
    console.error(`FAIL: ${what}`, detail ?? '')
    process.exit(1)
  }
}

async function post(body, proof) {
  const res = await fetch(endpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', DPoP: proof },
    body: JSON.stringify(body),
  })
  return { status: res.status, body: await res.json() }
}

async function get(headers) {
  const res = await fetch(resource, { headers })
  return { status: res.status, text: await res.text(), challenge: res.headers.get('www-authenticate') }
}

async function run(alg) {
  // a non-extractable key, as a browser would keep it
  const keypair = await DPoP.generateKeyPair(alg, { extractable: false })

  const login = await post(
    { strategy: 'local', username: process.env.USERNAME, password: process.env.PASSWORD },
    await DPoP.generateProof(keypair, endpoint, 'POST'),
  )
  check(login.status === 201 && login.body.token_type === 'DPoP', `${alg} login`, login)
  const jkt = login.body.authentication.payload.cnf?.jkt
  check(typeof jkt === 'string' && jkt.length === 43, `${alg} cnf.jkt`, login.body.authentication.payload)

  const call = async (token) =>
    get({ Authorization: `DPoP ${token}`, DPoP: await DPoP.generateProof(keypair, resource, 'GET', undefined, token) })
  let res = await call(login.body.accessToken)
  check(res.status === 200 && res.text.includes(`"jkt":"${jkt}"`), `${alg} guarded request`, res)

  const refreshed = await post(
    { action: 'refresh', refresh_token: login.body.refreshToken },
    await DPoP.generateProof(keypair, endpoint, 'POST'),
  )
  check(refreshed.status === 201 && refreshed.body.token_type === 'DPoP', `${alg} refresh`, refreshed)
  res = await call(refreshed.body.accessToken)
  check(res.status === 200, `${alg} refreshed token`, res)

  res = await get({ Authorization: `Bearer ${refreshed.body.accessToken}` })
  check(res.status === 401 && /^DPoP error="invalid_token"/.test(res.challenge ?? ''), `${alg} bound token as Bearer`, res)
  console.log(`ok: dpop interop ${alg} (jkt ${jkt})`)
}

for (const alg of ['ES256', 'Ed25519', 'RS256']) {
  await run(alg)
}
