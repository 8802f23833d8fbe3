// The web app end to end in headless Chromium: open it, send a message, see
// tokens stream in, switch conversations, reload and find them kept, check
// that model output cannot inject HTML, and take screenshots (desktop and
// phone). Run by webapp.sh with BYOAI_URL set.
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import path from 'node:path';

const require = createRequire(new URL('../node/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const url = process.env.BYOAI_URL, shots = process.env.SHOTS, profile = process.env.CHROME_PROFILE;

const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium', headless: true, viewport: { width: 1200, height: 800 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const step = (s) => console.log('- ' + s);
// an answer is over when an assistant message exists and none is streaming
const answered = (page, n) => page.waitForFunction((n) =>
  document.querySelectorAll('.msg.assistant').length === n && !document.querySelector('.msg.streaming'), n, { timeout: 90000 });
const errors = [];
try {
  const page = context.pages()[0] || await context.newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.setDefaultTimeout(30000);

  await page.goto(url);
  await page.waitForSelector('body[data-ready="1"]');
  assert.equal(await page.locator('#model option').count(), 1);
  assert.equal(await page.inputValue('#model'), 'tiny');
  step('app loaded, model listed');

  // greedy decoding: the tiny model tells its known story, long enough to watch it stream
  await page.click('#settings summary');
  await page.fill('#temperature', '0');
  await page.dispatchEvent('#temperature', 'change');
  await page.fill('#max-tokens', '1000');
  await page.dispatchEvent('#max-tokens', 'change');

  // Count repaints of the answer while it streams.
  await page.evaluate(() => {
    window.__paints = [];
    window.__chunks = 0;
    new MutationObserver(() => {
      const m = document.querySelector('.msg.assistant.streaming .body');
      if (m) window.__paints.push(m.textContent.length);
      const s = document.querySelector('.msg.assistant.streaming');
      if (s) window.__chunks = Math.max(window.__chunks, Number(s.dataset.chunks || 0));
    }).observe(document.getElementById('messages'), { childList: true, subtree: true, characterData: true, attributes: true, attributeFilter: ['data-chunks'] });
  });
  await page.fill('#input', 'Once upon a time');
  await page.press('#input', 'Enter');
  await answered(page, 1);
  const paints = await page.evaluate(() => window.__paints);
  const lengths = [...new Set(paints.filter((n) => n > 0))];
  // The app reads the answer as a stream of events and repaints once per
  // animation frame: the tiny model writes its ~300 tokens in tens of
  // milliseconds, so a few frames may cover them all. What must hold: many
  // events arrived and were applied one by one (data-chunks), and every
  // repaint seen while streaming showed a prefix that only grew.
  const chunks = await page.evaluate(() => window.__chunks);
  assert.ok(chunks >= 50, `the answer should arrive as many stream events, saw ${chunks}`);
  assert.ok(lengths.length >= 1, 'the answer is painted while it streams');
  for (let i = 1; i < lengths.length; i++) assert.ok(lengths[i - 1] < lengths[i], 'the answer only grows while streaming');
  const answer1 = await page.textContent('.msg.assistant .body');
  assert.ok(answer1.startsWith(', there was a little girl named Lily.'), 'the greedy story: ' + answer1.slice(0, 80));
  assert.match(await page.textContent('#speed'), /tokens\/s/);
  assert.match(await page.textContent('.msg.assistant .meta'), /\d+ tokens/);
  step(`streamed in ${lengths.length} steps: ${JSON.stringify(answer1.slice(0, 60))}...`);

  await page.waitForFunction(() => document.querySelectorAll('#conversations li').length === 1);
  await page.screenshot({ path: path.join(shots, 'webapp-desktop.png') });

  // a second conversation
  await page.click('#new-chat');
  assert.equal(await page.locator('.msg').count(), 0);
  await page.fill('#input', 'The little dog');
  await page.click('#send');
  await answered(page, 1);
  await page.waitForFunction(() => document.querySelectorAll('#conversations li').length === 2);
  step('second conversation saved');

  // switch back to the first
  await page.click('#conversations li:nth-child(2) .open');
  await page.waitForFunction(() => document.querySelector('.msg.user .body')?.textContent === 'Once upon a time');
  assert.equal(await page.textContent('.msg.assistant .body'), answer1);
  step('switched conversations');

  // reload: both kept, the open one restored
  await page.reload();
  await page.waitForSelector('body[data-ready="1"]');
  assert.equal(await page.locator('#conversations li').count(), 2);
  await page.waitForFunction(() => document.querySelector('.msg.user .body')?.textContent === 'Once upon a time');
  assert.equal(await page.textContent('.msg.assistant .body'), answer1);
  await page.click('#conversations li:nth-child(1) .open');
  await page.waitForFunction(() => document.querySelector('.msg.user .body')?.textContent === 'The little dog');
  step('conversations kept across a reload');

  // regenerate replaces the last answer
  const old = await page.$('.msg.assistant');
  await page.click('#regenerate');
  await page.waitForFunction((o) => !o.isConnected, old);
  await answered(page, 1);
  assert.equal(await page.textContent('.msg.user .body'), 'The little dog');
  step('regenerate');

  // model output cannot inject markup: store such an answer and open it
  const evil = '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=1</script>\n\n' +
    '**bold** and [a link](javascript:window.__pwned=1) and [ok](https://example.org)\n\n```html\n<b>code</b>\n```';
  const created = await page.evaluate(async (content) => {
    const r = await fetch('/api/conversations', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ title: 'evil', model: 'tiny', messages: [{ role: 'user', content: '<i>hi</i>' }, { role: 'assistant', content }] }) });
    return (await r.json()).id;
  }, evil);
  await page.reload();
  await page.waitForSelector('body[data-ready="1"]');
  await page.click(`#conversations li[data-id="${created}"] .open`);
  await page.waitForSelector('.msg.assistant strong');
  const safe = await page.evaluate(() => ({
    injected: document.querySelectorAll('#messages img, #messages script, #messages i, #messages b').length,
    pwned: window.__pwned === 1,
    links: [...document.querySelectorAll('#messages a')].map((a) => a.getAttribute('href')),
    code: document.querySelector('#messages pre code')?.textContent,
    user: document.querySelector('.msg.user .body').textContent,
  }));
  assert.equal(safe.injected, 0, 'no element from model text');
  assert.equal(safe.pwned, false);
  assert.deepEqual(safe.links, ['https://example.org']);
  assert.equal(safe.code, '<b>code</b>');
  assert.equal(safe.user, '<i>hi</i>');
  step('model output rendered safely');

  // install a model from the app, with progress, then talk to it
  await page.click('#new-chat');
  if (!(await page.$eval('#settings', (d) => d.open))) await page.click('#settings summary');
  await page.fill('#install-name', 'stories260k');
  await page.click('#install-button');
  await page.waitForFunction(() => /installed stories260k/.test(document.getElementById('install-progress').textContent),
    null, { timeout: 60000 });
  assert.deepEqual(await page.$$eval('#model option', (os) => os.map((o) => o.value).sort()), ['stories260k', 'tiny']);
  assert.equal(await page.inputValue('#model'), 'stories260k');
  await page.fill('#input', 'Once upon a time');
  await page.press('#input', 'Enter');
  await answered(page, 1);
  assert.ok((await page.textContent('.msg.assistant .body')).startsWith(', there was a little girl named Lily.'));
  assert.equal(await page.textContent('.msg.assistant .role'), 'stories260k');
  await page.fill('#install-name', 'no-such-model');
  await page.click('#install-button');
  await page.waitForFunction(() => /install failed: .*no-such-model/.test(document.getElementById('install-progress').textContent));
  step('installed a model from the app and used it');

  // phone-sized screen: the sidebar folds away behind a button
  await page.setViewportSize({ width: 390, height: 844 });
  assert.ok(await page.isVisible('#toggle-sidebar'));
  await page.waitForFunction(() => document.getElementById('sidebar').getBoundingClientRect().right <= 1);
  const composer = await page.locator('#composer').boundingBox();
  assert.ok(composer.width <= 390 && composer.y + composer.height <= 844, 'composer fits the screen');
  await page.screenshot({ path: path.join(shots, 'webapp-phone.png') });
  await page.click('#toggle-sidebar');
  await page.waitForFunction(() => document.getElementById('sidebar').getBoundingClientRect().left >= 0);
  await page.screenshot({ path: path.join(shots, 'webapp-phone-sidebar.png') });
  step('phone layout');

  assert.deepEqual(errors, [], 'no errors in the page');
} catch (e) {
  const page = context.pages()[0];
  if (page) {
    await page.screenshot({ path: path.join(shots, 'webapp-failure.png') }).catch(() => {});
    console.error('page state:', await page.evaluate(() => ({
      list: [...document.querySelectorAll('#conversations li')].map((li) => li.textContent),
      messages: [...document.querySelectorAll('.msg')].map((m) => m.className + ': ' + m.textContent.slice(0, 80)),
      status: document.getElementById('status').textContent,
    })).catch(() => null));
  }
  console.error('page errors:', errors);
  throw e;
} finally {
  await context.close();
}
