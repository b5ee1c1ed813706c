// Drives real headless Chromium through the second-factor flows: setting up
// an authenticator app on the account page, the code page of a sign-in,
// recovery codes, and the step-up page of a `require mfa` area. Started by
// TestE2ETOTPBrowser, which runs Caddy with /private/ (a password is
// enough) and /admin/ (require mfa) for users alice and bob, and passes:
//   BASE_URL    http://127.0.0.1:<port> of that Caddy
//   SCREENSHOT  where to save the code page (docs/mfa-code-page.png)
//   CHROMIUM    the browser binary (default /usr/bin/chromium)
// The test reads the TOTP secret from the page and computes the codes
// itself (RFC 6238: HMAC-SHA-1, 30 s, 6 digits), as an authenticator app does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { launch } from './chromium.mjs';

const base = process.env.BASE_URL;
const screenshot = process.env.SCREENSHOT;

function base32Decode(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of s.replace(/=+$/, '').toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

function totpAt(secret, step) {
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(step));
  const h = createHmac('sha1', base32Decode(secret)).update(msg).digest();
  const o = h[19] & 15;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

const currentStep = () => Math.floor(Date.now() / 30_000);
const usedSteps = new Set();

// a code the server has not seen yet: of this step or the next (the server
// takes one step of skew), waiting for a new step when both are spent
async function freshCode(secret) {
  for (;;) {
    const step = currentStep();
    for (const s of [step, step + 1]) {
      if (!usedSteps.has(`${secret}:${s}`)) {
        usedSteps.add(`${secret}:${s}`);
        return totpAt(secret, s);
      }
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}
const wrongCode = (secret) => totpAt(secret, currentStep() + 5);

async function newContext(t) {
  const { page } = await launch(t, { prefix: 'token-auth-totp-', viewport: { width: 960, height: 760 } });
  return page;
}

async function passwordSignIn(page, user, target) {
  await page.goto(`${base}${target}`);
  assert.equal(new URL(page.url()).pathname, '/authentication', `${target} did not lead to the login page`);
  await page.getByLabel('Username or email').fill(user);
  await page.getByLabel('Password').fill(`${user}-password`);
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Sign in' }).click()]);
}

async function signOut(page) {
  await page.goto(`${base}/private/`);
  await Promise.all([page.waitForNavigation(), page.evaluate(() => {
    const f = document.createElement('form');
    f.method = 'post';
    f.action = '/authentication/logout';
    document.body.append(f);
    f.submit();
  })]);
}

async function onCodePage(page) {
  const url = new URL(page.url());
  assert.equal(url.pathname, '/authentication/mfa', `not on the code page: ${page.url()}`);
  const code = page.getByLabel('Code from your authenticator app');
  assert.equal(await code.getAttribute('autocomplete'), 'one-time-code');
  assert.equal(await code.getAttribute('inputmode'), 'numeric');
  return code;
}

// set up the authenticator app on the page the browser is on (the account
// page's section or the set-up page); returns the secret and the recovery codes
async function setUpApp(page) {
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Set up an authenticator app' }).click()]);
  const secret = (await page.locator('#totp-secret').innerText()).trim();
  assert.match(secret, /^[A-Z2-7]{16,}$/, `secret ${secret}`);
  const qr = page.getByRole('img', { name: 'QR code of the authenticator key' });
  assert.match(await qr.getAttribute('src'), /^data:image\/png;base64,/);
  assert.ok(await qr.evaluate((img) => img.complete && img.naturalWidth > 0), 'the QR code did not load (CSP?)');
  await page.getByLabel('Code from the app').fill(await freshCode(secret));
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Turn on' }).click()]);
  const codes = await page.locator('#recovery-codes li').allInnerTexts();
  assert.equal(codes.length, 10, `recovery codes: ${codes}`);
  return { secret, recovery: codes.map((c) => c.trim()) };
}

test('second factor in headless Chromium', async (t) => {
  assert.ok(base, 'BASE_URL is not set');
  const page = await newContext(t);
  const earlier = await newContext(t); // alice signed in before she set the app up

  await t.test('a one-factor session of alice, from before the set-up', async () => {
    await passwordSignIn(earlier, 'alice', '/private/');
    assert.equal(await earlier.locator('#amr').innerText(), 'pwd');
  });

  let app;
  await t.test('set up the app from the account page', async () => {
    await passwordSignIn(page, 'alice', '/private/');
    assert.equal(new URL(page.url()).pathname, '/private/');
    await page.goto(`${base}/authentication/account`);
    assert.equal(await page.getByRole('heading', { name: 'Authenticator app' }).count(), 1);
    app = await setUpApp(page);
    await Promise.all([page.waitForNavigation(), page.getByRole('link', { name: 'Continue' }).click()]);
    assert.equal(new URL(page.url()).pathname, '/authentication/account');
    assert.equal(await page.locator('#recovery-left').innerText(), '10');
  });

  await t.test('signing in again goes on to the code page; a wrong code is refused', async () => {
    await signOut(page);
    await passwordSignIn(page, 'alice', '/private/');
    const code = await onCodePage(page);
    assert.equal(await page.locator('input[name=redirect]').first().inputValue(), '/private/');
    if (screenshot) await page.screenshot({ path: screenshot });
    await code.fill(wrongCode(app.secret));
    await Promise.all([page.waitForURL(/error=invalid_code/), page.getByRole('button', { name: 'Verify' }).click()]);
    assert.match(await page.getByRole('alert').innerText(), /not right/);
    const cookies = (await page.context().cookies()).map((c) => c.name);
    assert.ok(!cookies.includes('access_token'), `signed in after a wrong code: ${cookies}`);
  });

  await t.test('the right code lands on the page, with two factors', async () => {
    const code = await onCodePage(page);
    await code.fill(await freshCode(app.secret));
    await Promise.all([page.waitForURL(`${base}/private/`), page.getByRole('button', { name: 'Verify' }).click()]);
    assert.equal(await page.locator('#who').innerText(), 'alice');
    assert.equal(await page.locator('#amr').innerText(), 'pwd,otp,mfa');
  });

  await t.test('a recovery code works once and only once', async () => {
    for (const attempt of ['first', 'second']) {
      await signOut(page);
      await passwordSignIn(page, 'alice', '/private/');
      await onCodePage(page);
      await page.getByText('Use a recovery code instead').click();
      await page.getByLabel('Recovery code').fill(app.recovery[0]);
      await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Use recovery code' }).click()]);
      if (attempt === 'first') {
        assert.equal(page.url(), `${base}/private/`);
        assert.equal(await page.locator('#amr').innerText(), 'pwd,otp,mfa');
      } else {
        assert.match(page.url(), /\/authentication\/mfa\?error=invalid_code/);
        assert.match(await page.getByRole('alert').innerText(), /not right/);
      }
    }
  });

  await t.test('a require-mfa area sends a one-factor session to the step-up page and back', async () => {
    await earlier.goto(`${base}/admin/`);
    assert.equal(new URL(earlier.url()).pathname, '/authentication/mfa/step-up');
    await earlier.getByLabel('Code from your authenticator app').fill(await freshCode(app.secret));
    await Promise.all([earlier.waitForURL(`${base}/admin/`), earlier.getByRole('button', { name: 'Verify' }).click()]);
    assert.equal(await earlier.locator('#heading').innerText(), 'Admin');
    assert.equal(await earlier.locator('#amr').innerText(), 'pwd,otp,mfa');
  });

  await t.test('without a second factor, the require-mfa area sends to set one up, then back', async () => {
    const bob = await newContext(t);
    await passwordSignIn(bob, 'bob', '/private/');
    await bob.goto(`${base}/admin/`);
    assert.equal(new URL(bob.url()).pathname, '/authentication/account/mfa');
    await setUpApp(bob);
    await Promise.all([bob.waitForURL(`${base}/admin/`), bob.getByRole('link', { name: 'Continue' }).click()]);
    assert.equal(await bob.locator('#who').innerText(), 'bob');
    assert.equal(await bob.locator('#amr').innerText(), 'pwd,otp,mfa');
  });
});
