// Drives the example's login page in headless Chromium the way a person
// would: open it, log in as USER, wait for the QR code, take a screenshot,
// hand the screenshot to the device agent (`assent-agent scan`), and wait
// for the page to show EXPECT. Prints one JSON line; exits 0 only if the
// page showed EXPECT.
//
// Environment: URL (the example's page), USER, EXPECT (text to wait for),
// SHOT (screenshot path), AGENT (JSON array: the scan command without the
// image path), CHROMIUM (default /usr/bin/chromium), WAIT_MS (how long to
// wait for EXPECT after the scan, default 20 000).

import { spawnSync } from 'node:child_process';

import { chromium } from 'playwright-core';

const { URL: pageUrl, USER, EXPECT, SHOT } = process.env;
const agent = JSON.parse(process.env.AGENT);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu'],
});
const report = { steps: [] };
let ok = false;
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 900 } });
  await page.goto(pageUrl);
  report.steps.push('opened');
  await page.fill('input[name=user]', USER);
  await page.click('button[type=submit]');
  await page.waitForFunction(() => {
    const qr = document.getElementById('qr');
    return qr && qr.complete && qr.naturalWidth > 0;
  }, null, { timeout: 15_000 });
  report.steps.push('qr shown');
  await page.screenshot({ path: SHOT });
  report.steps.push('screenshot');
  const scan = spawnSync(agent[0], [...agent.slice(1), SHOT], { encoding: 'utf8', timeout: 60_000 });
  report.scan = { status: scan.status, stdout: scan.stdout.trim(), stderr: scan.stderr.trim() };
  report.steps.push('scanned');
  await page.waitForFunction(
    (expect) => document.getElementById('status')?.textContent.includes(expect),
    EXPECT,
    { timeout: Number(process.env.WAIT_MS ?? 20_000) },
  );
  report.shown = await page.textContent('#status');
  ok = true;
} catch (error) {
  report.error = String(error.message ?? error).split('\n')[0];
} finally {
  await browser.close();
}
console.log(JSON.stringify({ ok, ...report }));
process.exit(ok ? 0 : 1);
