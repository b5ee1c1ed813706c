// Single sign-on across three sites on three host names, in real headless
// Chromium (Debian's /usr/bin/chromium). Started by TestSSOChromium and
// TestSSOChromiumTwoInstances (e2e/sso_test.go), which serve the sites over
// plain HTTP on 127.0.0.1 and pass:
//   PORTAL_URL  http://login.test:<port>, the realm's sign-in portal
//   SITE_A_URL  http://a.test:<port>
//   SITE_B_URL  http://b.test:<port>
//   CHROMIUM    the browser binary (default /usr/bin/chromium)
// Chromium maps every *.test name to 127.0.0.1 (--host-resolver-rules).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launch, redirectChain } from './chromium.mjs';

const portal = process.env.PORTAL_URL;
const siteA = process.env.SITE_A_URL;
const siteB = process.env.SITE_B_URL;

// whether a URL is the portal's login page
const isPortalLogin = (u) => {
  const url = new URL(u);
  return url.origin === portal && url.pathname === '/authentication';
};

test('one sign-in across three sites, and single logout', async (t) => {
  assert.ok(portal && siteA && siteB, 'PORTAL_URL, SITE_A_URL and SITE_B_URL must be set');
  const { context, page } = await launch(t, { prefix: 'token-auth-sso-', args: ['--host-resolver-rules=MAP *.test 127.0.0.1'] });
  const host = (u) => new URL(u).hostname; // Caddy's {host}

  await t.test("A's private page leads to the portal's login page", async () => {
    const resp = await page.goto(`${siteA}/private`);
    assert.equal(resp.status(), 200);
    assert.ok(isPortalLogin(page.url()), `landed on ${page.url()}`);
    const chain = redirectChain(resp);
    assert.ok(chain.some((u) => u.startsWith(`${portal}/authentication/sso?`)), `no /sso in ${chain}`);
  });

  await t.test('signing in at the portal lands on A\'s private page', async () => {
    await page.getByLabel('Username or email').fill('alice');
    await page.getByLabel('Password').fill('alice-password');
    await Promise.all([page.waitForURL(`${siteA}/private`), page.getByRole('button', { name: 'Sign in' }).click()]);
    assert.equal(await page.locator('#who').innerText(), `alice at ${host(siteA)} via ${portal}`);
    const names = (await context.cookies(siteA)).map((c) => c.name);
    assert.ok(names.includes('access_token'), `A's cookies: ${names}`);
  });

  await t.test("B's private page opens with no login page", async () => {
    const resp = await page.goto(`${siteB}/private`);
    assert.equal(resp.status(), 200);
    assert.equal(page.url(), `${siteB}/private`);
    const chain = redirectChain(resp);
    assert.ok(!chain.some((u) => isPortalLogin(u)), `a login page in ${chain}`);
    assert.ok(chain.some((u) => u.startsWith(`${portal}/authentication/sso?`)), `not through the portal: ${chain}`);
    assert.equal(await page.locator('#who').innerText(), `alice at ${host(siteB)} via ${portal}`);
    // B's cookies are its own, host-only
    const cookies = await context.cookies(siteB);
    const access = cookies.find((c) => c.name === 'access_token');
    assert.ok(access && access.domain === host(siteB), `B's access cookie: ${JSON.stringify(access)}`);
  });

  await t.test('signing out at B', async () => {
    await Promise.all([page.waitForURL(isPortalLogin), page.getByRole('button', { name: 'Sign out' }).click()]);
  });

  // a revocation reaches every instance within 5 s: look again until then
  async function showsLogin(url) {
    for (let i = 0; i < 50; i++) {
      await page.goto(url);
      if (isPortalLogin(page.url())) return;
      await page.waitForTimeout(100);
    }
    assert.fail(`${url} still opens after signing out: at ${page.url()}`);
  }

  await t.test("A's and the portal's private pages show the login page again", async () => {
    await showsLogin(`${siteA}/private`);
    await showsLogin(`${portal}/private`);
    await showsLogin(`${siteB}/private`);
  });
});
