import { existsSync } from 'node:fs';
import puppeteer, { type Browser } from 'puppeteer-core';

/** Debian's package; CI installs it in .ci/run. CHROMIUM_PATH points elsewhere. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * Headless Chromium for the report tests. A machine without it fails the test (never a silent
 * skip): the report is what people look at, and only a browser shows that it renders.
 */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `headless Chromium is needed to test the HTML report, and ${CHROMIUM} does not exist: ` +
        'install it with `sudo apt-get install --no-install-recommends chromium` (CI does, in .ci/run), ' +
        'or set CHROMIUM_PATH to a Chromium or Chrome binary',
    );
  }
  return puppeteer.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage'],
  });
}
