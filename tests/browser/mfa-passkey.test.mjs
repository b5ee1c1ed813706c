// A passkey as the second step of a password login, in real headless
// Chromium with the DevTools virtual authenticator. Started by
// TestE2EPasskeyAsSecondFactor, which runs Caddy with /admin/ under
// `require mfa` and passkeys (no authenticator app) for alice, and passes:
//   BASE_URL   http://localhost:<port> of that Caddy
//   PASSWORD   alice's password
//   CHROMIUM   the browser binary (default /usr/bin/chromium)
// alice signs in with her password, is sent to add a passkey (she has no
// second factor yet), adds one on the account page; signed out, her next
// password login goes to the code page, whose "Use a passkey" button lands
// on the page with two factors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addAuthenticator, launch } from './chromium.mjs';

const base = process.env.BASE_URL;
const password = process.env.PASSWORD;

test('a password login under require mfa completes with a passkey', async (t) => {
  assert.ok(base && password, 'BASE_URL and PASSWORD must be set');
  const { context, page } = await launch(t, { prefix: 'token-auth-mfa-passkey-', viewport: { width: 960, height: 760 }, timeout: 20_000 });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await addAuthenticator(context, page);
  // The virtual authenticator would answer the login page's passkey
  // autofill by itself; this person types their password.
  await page.addInitScript(() => {
    if (window.PublicKeyCredential) PublicKeyCredential.isConditionalMediationAvailable = async () => false;
  });
  const adminURL = `${base}/admin/`;
  const signInWithPassword = async (then) => {
    await page.goto(adminURL);
    assert.equal(new URL(page.url()).pathname, '/authentication', page.url());
    await page.getByLabel('Username or email').fill('alice');
    await page.getByLabel('Password').fill(password);
    await Promise.all([page.waitForURL(then), page.getByRole('button', { name: 'Sign in', exact: true }).click()]);
  };

  await t.test('without a second factor, the password leads to adding a passkey', async () => {
    await signInWithPassword(/\/authentication\/account/);
    await page.getByLabel('Name of the new passkey').fill('laptop');
    await Promise.all([page.waitForURL(/notice=passkey_added/), page.getByRole('button', { name: 'Add a passkey' }).click()]);
    assert.match(await page.locator('#passkey-list').innerText(), /laptop/);
  });

  await t.test('signed out, the password goes on to the code page, which offers the passkey', async () => {
    await context.clearCookies();
    await signInWithPassword(/\/authentication\/mfa\?/);
    const button = page.getByRole('button', { name: 'Use a passkey' });
    await button.waitFor({ state: 'visible' });
    assert.equal(await page.locator('input[name=code]').count(), 0, 'a code field without an authenticator app');
    assert.deepEqual((await context.cookies()).map((c) => c.name).filter((n) => n !== 'mfa_token'), [], 'session cookies before the second factor');
  });

  await t.test('"Use a passkey" lands on the page, signed in with two factors', async () => {
    await Promise.all([page.waitForURL(adminURL), page.getByRole('button', { name: 'Use a passkey' }).click()]);
    assert.equal(await page.locator('#heading').innerText(), 'Admin');
    assert.equal(await page.locator('#who').innerText(), 'alice');
    assert.equal(await page.locator('#amr').innerText(), 'pwd,hwk,mfa');
  });

  await t.test('no script errors on any page', async () => {
    assert.deepEqual(errors.filter((e) => !e.startsWith('Failed to load resource')), []);
  });
});
