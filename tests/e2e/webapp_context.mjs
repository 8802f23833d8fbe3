// A conversation longer than the context in the web app (run by
// webapp_context.sh with BYOAI_URL set; the server's context is 128 tokens).
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import path from 'node:path';

const require = createRequire(new URL('../node/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const url = process.env.BYOAI_URL, shots = process.env.SHOTS, profile = process.env.CHROME_PROFILE;
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium', headless: true, viewport: { width: 1200, height: 900 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const step = (s) => console.log('- ' + s);
const idle = (page) => page.waitForFunction(() => !document.querySelector('.msg.streaming') &&
  !document.getElementById('send').disabled, null, { timeout: 90000 });
const errors = [];
let page;
try {
  page = context.pages()[0] || await context.newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  page.setDefaultTimeout(30000);
  await page.goto(url);
  await page.waitForSelector('body[data-ready="1"]');
  await page.click('#settings summary');
  await page.fill('#temperature', '0');
  await page.dispatchEvent('#temperature', 'change');
  await page.fill('#max-tokens', '40');
  await page.dispatchEvent('#max-tokens', 'change');

  // eight turns of about 50 tokens each: three times the context
  for (let i = 0; i < 8; i++) {
    await page.fill('#input', `Tell me about the little dog number ${i}.`);
    await page.press('#input', 'Enter');
    await idle(page);
    const bodies = await page.$$eval('.msg.assistant .body', (b) => b.map((x) => x.textContent));
    assert.equal(bodies.length, i + 1, `turn ${i}: an answer for every question (${bodies.length})`);
    for (const [k, b] of bodies.entries()) assert.ok(b.trim().length > 0, `turn ${i}: answer ${k} is empty`);
  }
  const notices = await page.$$eval('.notice', (n) => n.map((x) => x.textContent));
  assert.equal(notices.length, 1, 'the app says once that old turns no longer fit: ' + JSON.stringify(notices));
  assert.match(notices[0], /oldest \d+ messages\s+no longer fit/);
  assert.equal(await page.locator('.notice.error').count(), 0);
  step('8 turns past a 128-token context: every answer there, one notice: ' + notices[0].slice(0, 70));
  await page.screenshot({ path: path.join(shots, 'webapp-context.png') });

  // the conversation is saved with every message; reopening shows them all
  await page.waitForFunction(() => document.querySelectorAll('#conversations li').length === 1);
  await page.reload();
  await page.waitForSelector('body[data-ready="1"]');
  await page.click('#conversations li:nth-child(1) .open');
  await page.waitForFunction(() => document.querySelectorAll('.msg.assistant').length === 8);
  step('all 16 messages kept');

  // one message that alone is longer than the context: an error notice, no empty bubble
  await page.click('#new-chat');
  await page.fill('#input', 'the dog ran and ran '.repeat(60));
  await page.press('#input', 'Enter');
  await idle(page);
  assert.equal(await page.locator('.msg.assistant').count(), 0, 'no assistant bubble for a failed answer');
  const err = await page.textContent('.notice.error');
  assert.match(err, /No answer: .*too long/);
  step('a message longer than the context: ' + err.slice(0, 90));
  assert.deepEqual(errors, []);
} catch (e) {
  if (page) await page.screenshot({ path: path.join(shots, 'webapp-context-failure.png') }).catch(() => {});
  console.error(e);
  await context.close();
  process.exit(1);
}
await context.close();
