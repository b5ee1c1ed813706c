// What the browser tests share: headless Chromium (Debian's, or $CHROMIUM)
// in a fresh profile, and the DevTools virtual authenticator the passkey
// tests stand in for a phone's or laptop's with.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

// launch starts Chromium with a profile of its own (named after prefix),
// closed and removed when the test t ends, and returns its context and
// first page, and the profile's folder (removed with it). args are more
// command-line switches.
export async function launch(t, { prefix, viewport, timeout = 30_000, args = [] }) {
  const userDataDir = await mkdtemp(join(tmpdir(), prefix));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync', ...args],
    viewport,
    timeout: 60_000,
  });
  t.after(async () => {
    await context.close();
    await rm(userDataDir, { recursive: true, force: true });
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(timeout);
  return { context, page, userDataDir };
}

// addAuthenticator adds a virtual platform authenticator that verifies
// its user, as Touch ID does.
export async function addAuthenticator(context, page) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport: 'internal', hasResidentKey: true,
      hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
    },
  });
  return { cdp, authenticatorId };
}

// redirectChain is the URLs a navigation went through, first to last.
export function redirectChain(response) {
  const urls = [];
  for (let req = response.request(); req; req = req.redirectedFrom()) urls.unshift(req.url());
  return urls;
}
