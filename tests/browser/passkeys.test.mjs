// Passkeys in real headless Chromium (Debian's /usr/bin/chromium), with the
// DevTools virtual authenticator standing in for a phone's or laptop's.
// Started by TestBrowserPasskeys (e2e), which runs two Caddy instances on
// one Redis (a passkey registered at one signs in at the other) and passes:
//   BASE_URL      http://localhost:<port> of instance A
//   BASE_URL_2    http://localhost:<port> of instance B
//   INVITE_URLS   two one-time invitation links (comma-separated), for carol and dave
//   SCREENSHOT    where to save the login page with its passkey button
//   CHROMIUM      the browser binary (default /usr/bin/chromium)
// The flows run twice: on a desktop window and on a 375 px phone screen.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addAuthenticator, launch } from './chromium.mjs';

const base = process.env.BASE_URL;
const base2 = process.env.BASE_URL_2;
const invites = (process.env.INVITE_URLS || '').split(',').filter(Boolean);
const screenshot = process.env.SCREENSHOT;

const screens = [
  { name: 'desktop', viewport: { width: 960, height: 760 }, user: 'alice', password: 'alice-password', invite: invites[0], invited: 'carol' },
  { name: 'phone', viewport: { width: 375, height: 740 }, user: 'bob', password: 'bob-password', invite: invites[1], invited: 'dave' },
];

async function credentialsOf({ cdp, authenticatorId }) {
  return (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials;
}

async function fitsScreen(page, width) {
  const { scrollWidth, clientWidth } = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    clientWidth: document.documentElement.clientWidth,
  }));
  assert.ok(scrollWidth <= clientWidth && clientWidth <= width, `page scrolls sideways: ${scrollWidth} > ${clientWidth}`);
}

const signedOutTo = (url) => new URL(url).pathname === '/authentication';

for (const screen of screens) {
  test(`passkeys in headless Chromium (${screen.name}, ${screen.viewport.width} px)`, async (t) => {
    assert.ok(base && base2, 'BASE_URL and BASE_URL_2 must be set');
    const { context, page } = await launch(t, { prefix: 'token-auth-passkeys-', viewport: screen.viewport, timeout: 20_000 });
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    const authenticator = await addAuthenticator(context, page);
    const privateURL = `${base}/private/`;
    // The virtual authenticator answers a pending autofill request by itself
    // (as if the person picked the passkey the field offers). To press the
    // button instead, a page can play a browser without autofill.
    await page.addInitScript(() => {
      if (window.name === 'no-autofill' && window.PublicKeyCredential) {
        PublicKeyCredential.isConditionalMediationAvailable = async () => false;
      }
    });
    const withoutAutofill = async (fn) => {
      await page.evaluate(() => { window.name = 'no-autofill'; });
      try {
        await fn();
      } finally {
        await page.evaluate(() => { window.name = ''; });
      }
    };
    const signInWithButton = (url) => withoutAutofill(async () => {
      await page.goto(url);
      assert.ok(signedOutTo(page.url()), page.url());
      await Promise.all([page.waitForURL(url), page.getByRole('button', { name: 'Sign in with a passkey' }).click()]);
    });

    await t.test('the login page offers a passkey, with nothing inline', async () => {
      await page.goto(privateURL);
      assert.ok(signedOutTo(page.url()), page.url());
      const button = page.getByRole('button', { name: 'Sign in with a passkey' });
      await button.waitFor({ state: 'visible' });
      assert.equal(await page.getByLabel('Username or email').getAttribute('autocomplete'), 'username webauthn');
      await fitsScreen(page, screen.viewport.width);
      const box = await button.boundingBox();
      assert.ok(box.x >= 0 && box.x + box.width <= screen.viewport.width && box.height >= 40, `button ${JSON.stringify(box)}`);
      if (screenshot && screen.name === 'desktop') await page.screenshot({ path: screenshot });
    });

    await t.test('password sign-in, then the account page adds a passkey', async () => {
      await page.getByLabel('Username or email').fill(screen.user);
      await page.getByLabel('Password').fill(screen.password);
      await Promise.all([page.waitForURL(privateURL), page.getByRole('button', { name: 'Sign in', exact: true }).click()]);
      await page.goto(`${base}/authentication/account`);
      assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Your account');
      assert.match(await page.locator('#session-list').innerText(), /this browser/);
      await fitsScreen(page, screen.viewport.width);
      await page.getByLabel('Name of the new passkey').fill(`${screen.name} key`);
      await Promise.all([page.waitForURL(/notice=passkey_added/), page.getByRole('button', { name: 'Add a passkey' }).click()]);
      assert.match(await page.locator('#passkey-list').innerText(), new RegExp(`${screen.name} key`));
      assert.equal((await credentialsOf(authenticator)).length, 1, 'no credential in the authenticator');
      await fitsScreen(page, screen.viewport.width);
    });

    // signs this browser's session out on the account page; it lands on
    // the login page, which must not sign straight back in
    const signOutHere = () => withoutAutofill(async () => {
      await page.goto(`${base}/authentication/account`);
      const mine = page.locator('#session-list li', { hasText: 'this browser' });
      await Promise.all([page.waitForURL(/notice=signed_out/), mine.getByRole('button', { name: 'Sign out' }).click()]);
      assert.deepEqual((await context.cookies()).map((c) => c.name), []);
    });

    await t.test('signed out, "Sign in with a passkey" opens the private page', async () => {
      await signOutHere();
      await signInWithButton(privateURL);
      assert.equal(await page.locator('#user-id').innerText(), screen.user);
    });

    await t.test('autofill: the user field offers the passkey, and choosing it signs in', async () => {
      await signOutHere();
      // the login page starts a conditional request on load; the passkey
      // the field offers is chosen (by the virtual authenticator), no click
      const seen = [];
      const onNav = (frame) => { if (frame === page.mainFrame()) seen.push(new URL(frame.url()).pathname); };
      page.on('framenavigated', onNav);
      await page.goto(privateURL, { waitUntil: 'commit' });
      await page.waitForURL(privateURL);
      page.off('framenavigated', onNav);
      assert.deepEqual(seen.slice(0, 2), ['/authentication', '/private/'], `went through ${seen}`);
      assert.equal(await page.locator('#user-id').innerText(), screen.user);
    });

    await t.test('registered at one instance, the passkey signs in at the other', async () => {
      await context.clearCookies();
      await signInWithButton(`${base2}/private/`);
      assert.equal(await page.locator('#user-id').innerText(), screen.user);
      await context.clearCookies();
    });

    await t.test('a removed passkey no longer signs in', async () => {
      await withoutAutofill(async () => {
        await page.goto(privateURL);
        await page.getByLabel('Username or email').fill(screen.user);
        await page.getByLabel('Password').fill(screen.password);
        await Promise.all([page.waitForURL(privateURL), page.getByRole('button', { name: 'Sign in', exact: true }).click()]);
      });
      await page.goto(`${base}/authentication/account`);
      await Promise.all([page.waitForURL(/notice=passkey_removed/),
        page.locator('#passkey-list li').first().getByRole('button', { name: /Remove/ }).click()]);
      assert.equal(await page.locator('#passkey-list').count(), 0);
      await signOutHere();
      // the authenticator still offers it; the site refuses it
      await withoutAutofill(async () => {
        await page.goto(privateURL);
        await Promise.all([page.waitForURL(/error=passkey_failed/), page.getByRole('button', { name: 'Sign in with a passkey' }).click()]);
      });
      assert.match(await page.getByRole('alert').innerText(), /did not sign you in/);
      assert.deepEqual((await context.cookies()).map((c) => c.name), []);
    });

    await t.test('an invitation registers a passkey for an account without a password, and signs in', async () => {
      assert.ok(screen.invite, 'INVITE_URLS must name two invitations');
      // a new person, a new device: only the invited account's passkey in it
      await authenticator.cdp.send('WebAuthn.clearCredentials', { authenticatorId: authenticator.authenticatorId });
      await context.clearCookies();
      await page.goto(screen.invite);
      assert.equal(await page.getByRole('heading', { level: 1 }).innerText(), 'Create your passkey');
      await fitsScreen(page, screen.viewport.width);
      await Promise.all([page.waitForURL(/\/authentication\/account\?notice=passkey_added/),
        page.getByRole('button', { name: 'Create a passkey and sign in' }).click()]);
      assert.match(await page.locator('.sub').first().innerText(), new RegExp(screen.invited));
      assert.equal((await page.locator('#passkey-list li').count()), 1);

      // used: a clear page
      const resp = await page.goto(screen.invite);
      assert.equal(resp.status(), 410);
      assert.match(await page.getByRole('heading', { level: 1 }).innerText(), /no longer valid/);

      // and the new passkey signs in on its own
      await context.clearCookies();
      await signInWithButton(privateURL);
      assert.equal(await page.locator('#user-id').innerText(), screen.invited);
    });

    await t.test('no script errors on any page', async () => {
      // answers like the used invitation's 410 or a missing favicon are not script errors
      assert.deepEqual(errors.filter((e) => !e.startsWith('Failed to load resource')), []);
    });
  });
}
