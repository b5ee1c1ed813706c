// Drives real headless Chromium (Debian's /usr/bin/chromium) through the
// example site's login flow. Started by TestBrowserLoginFlow (e2e/chromium_test.go),
// which runs Caddy with examples/Caddyfile and a short access_ttl and passes:
//   BASE_URL    http://localhost:<port> of that Caddy
//   SCREENSHOT  where to save the login page, an absolute path; unset, it goes to
//               this run's temporary directory and is deleted with it, so a test
//               run changes no tracked file (docs/refresh-screenshot.sh sets it to
//               docs/login-page.png)
//   CHROMIUM    the browser binary (default /usr/bin/chromium)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { launch, redirectChain } from './chromium.mjs';

const base = process.env.BASE_URL;
const user = process.env.DEMO_USER || 'demo';
const password = process.env.DEMO_PASSWORD || 'demo-password';

const cookieByName = (cookies, name) => cookies.find((c) => c.name === name);

// exp of a JWT, in milliseconds
function tokenExpiry(jwt) {
  const payload = JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());
  return payload.exp * 1000;
}

test('static site login flow in headless Chromium', async (t) => {
  assert.ok(base, 'BASE_URL is not set');
  const { context, page, userDataDir } = await launch(t, {
    prefix: 'token-auth-chromium-', viewport: { width: 960, height: 680 },
  });
  const screenshot = process.env.SCREENSHOT || join(userDataDir, 'login-page.png');
  const privateURL = `${base}/private/`;
  // a static file of the private area, a day old (file_server, no templates)
  const staticURL = `${base}/private/members.json`;

  await t.test('the private page leads to the login page, redirect kept', async () => {
    const resp = await page.goto(privateURL);
    assert.equal(resp.status(), 200);
    const url = new URL(page.url());
    assert.equal(url.pathname, '/authentication');
    assert.equal(url.searchParams.get('redirect'), '/private/');
    assert.equal(await page.title(), `Sign in · ${new URL(base).hostname}`);
    // proper labels and autocomplete
    const username = page.getByLabel('Username or email');
    const pw = page.getByLabel('Password');
    assert.equal(await username.getAttribute('autocomplete'), 'username');
    assert.equal(await pw.getAttribute('autocomplete'), 'current-password');
    assert.equal(await pw.getAttribute('type'), 'password');
    assert.equal(await page.locator('input[name=redirect]').inputValue(), '/private/');
    assert.equal(await page.getByRole('alert').count(), 0, 'an error shows before any attempt');
    await page.screenshot({ path: screenshot });
  });

  await t.test('the login page fits a phone screen', async () => {
    await page.setViewportSize({ width: 375, height: 740 });
    const { scrollWidth, clientWidth } = await page.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth,
      clientWidth: document.documentElement.clientWidth,
    }));
    assert.ok(scrollWidth <= clientWidth, `page scrolls sideways on a phone: ${scrollWidth} > ${clientWidth}`);
    const box = await page.getByRole('button', { name: 'Sign in' }).boundingBox();
    assert.ok(box.x >= 0 && box.x + box.width <= 375 && box.height >= 40, `button ${JSON.stringify(box)}`);
    if (process.env.SCREENSHOT_PHONE) await page.screenshot({ path: process.env.SCREENSHOT_PHONE });
    await page.setViewportSize({ width: 960, height: 680 });
  });

  await t.test('a wrong password shows an error and keeps the redirect and the user name', async () => {
    await page.getByLabel('Username or email').fill(user);
    await page.getByLabel('Password').fill('not-the-password');
    await Promise.all([page.waitForURL(/error=invalid_login/), page.getByRole('button', { name: 'Sign in' }).click()]);
    assert.match(await page.getByRole('alert').innerText(), /Wrong username or password/);
    assert.equal(await page.locator('input[name=redirect]').inputValue(), '/private/');
    assert.equal(await page.getByLabel('Username or email').inputValue(), user, 'the user field was cleared');
    assert.equal(await page.getByLabel('Password').inputValue(), '', 'the password was kept');
    assert.ok(!page.url().includes(user), `the user name is in the URL: ${page.url()}`);
    assert.equal((await context.cookies()).length, 0, 'a failed login set cookies');
    if (process.env.SCREENSHOT_ERROR) await page.screenshot({ path: process.env.SCREENSHOT_ERROR });
  });

  await t.test('the right password lands on the private page', async () => {
    await page.getByLabel('Username or email').fill(user);
    await page.getByLabel('Password').fill(password);
    await Promise.all([page.waitForURL(privateURL), page.getByRole('button', { name: 'Sign in' }).click()]);
    assert.equal(await page.locator('#private-heading').innerText(), "Members' area");
    assert.equal(await page.locator('#user-id').innerText(), user);
  });

  let first;
  await t.test('the cookies are HttpOnly and the refresh cookie stays at the endpoint', async () => {
    // what the browser actually sends with the private page
    const resp = await page.goto(privateURL);
    assert.equal(resp.status(), 200);
    const sent = (await resp.request().allHeaders()).cookie ?? '';
    assert.match(sent, /(^|; )access_token=/);
    assert.doesNotMatch(sent, /refresh_token=/, 'the refresh cookie was sent to a page');

    const cookies = await context.cookies();
    const access = cookieByName(cookies, 'access_token');
    const refresh = cookieByName(cookies, 'refresh_token');
    assert.ok(access && refresh, `cookies: ${cookies.map((c) => c.name)}`);
    assert.deepEqual([access.httpOnly, access.path, access.sameSite, access.secure], [true, '/', 'Lax', false]);
    assert.deepEqual([refresh.httpOnly, refresh.path, refresh.sameSite, refresh.secure], [true, '/authentication', 'Lax', false]);
    // both live as long as the session, longer than the access token
    assert.ok(access.expires * 1000 > tokenExpiry(access.value) + 60_000, 'access cookie dies with its token');
    assert.equal(await page.evaluate(() => document.cookie), '', 'scripts can read the cookies');
    first = { access: access.value, refresh: refresh.value };
  });

  await t.test('after the access token expires a navigation still shows the private page', async () => {
    const wait = tokenExpiry(first.access) + 1500 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const resp = await page.goto(privateURL);
    assert.equal(resp.status(), 200);
    assert.equal(page.url(), privateURL);
    assert.equal(await page.locator('#private-heading').innerText(), "Members' area");
    const chain = redirectChain(resp).map((u) => new URL(u).pathname);
    assert.deepEqual(chain, ['/private/', '/authentication/refresh', '/private/'], 'went through the refresh endpoint, not the login page');
    const cookies = await context.cookies();
    const access = cookieByName(cookies, 'access_token');
    const refresh = cookieByName(cookies, 'refresh_token');
    assert.notEqual(access.value, first.access, 'access cookie not rotated');
    assert.notEqual(refresh.value, first.refresh, 'refresh cookie not rotated');
    assert.ok(tokenExpiry(access.value) > Date.now(), 'the new access token is already expired');
  });

  await t.test('a static private file is answered private, no-cache', async () => {
    const resp = await page.goto(staticURL);
    assert.equal(resp.status(), 200);
    assert.deepEqual(JSON.parse(await resp.text()).members, [user]);
    const headers = resp.headers();
    assert.ok(headers['last-modified'] && headers.etag, 'file_server sent no validators');
    assert.equal(headers['cache-control'], 'private, no-cache');
    await page.goto(privateURL); // back to the page with the Sign out button
  });

  await t.test('logout signs out and the private page leads to the login page again', async () => {
    const stolen = cookieByName(await context.cookies(), 'access_token');
    await Promise.all([page.waitForURL(/\/authentication\?notice=signed_out/), page.getByRole('button', { name: 'Sign out' }).click()]);
    assert.equal(await page.getByRole('status').innerText(), 'You have been signed out.');
    assert.deepEqual((await context.cookies()).map((c) => c.name), [], 'cookies left after logout');

    await page.goto(privateURL);
    let url = new URL(page.url());
    assert.equal(url.pathname, '/authentication');
    assert.equal(url.searchParams.get('redirect'), '/private/');

    // the static file seen before logout is not shown again from the cache
    await page.goto(staticURL);
    url = new URL(page.url());
    assert.equal(url.pathname, '/authentication', 'the browser showed a cached copy of a private file after logout');
    assert.equal(url.searchParams.get('redirect'), '/private/members.json');

    // the session is revoked on the server, not only forgotten by the browser
    await context.addCookies([{ name: stolen.name, value: stolen.value, url: base }]);
    await page.goto(privateURL);
    url = new URL(page.url());
    assert.equal(url.pathname, '/authentication', 'the old access token still opens the private page');
  });
});
