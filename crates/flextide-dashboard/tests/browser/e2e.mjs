// The dashboard in a real browser: Debian's chromium driven by
// playwright-core (no browser download). Started by tests/browser.rs, which
// serves the dashboard over two memory queues and passes:
//   DASHBOARD_URL     where it listens
//   EXPECTED          JSON {queue: {ready, in_flight, delayed, dead_letters}} from stats()
//   SCREENSHOT_DIR    where the screenshots go
//   CHROMIUM          the browser binary (default /usr/bin/chromium)
// Exits 0 when every check passed; prints what failed otherwise.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const url = process.env.DASHBOARD_URL;
const expected = JSON.parse(process.env.EXPECTED);
const shots = process.env.SCREENSHOT_DIR;
const XSS = '<script>alert(1)</script>';
const XSS_REASON = '<img src=x onerror=alert(2)>';

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok - ${what}`);
}

const profile = mkdtempSync(join(tmpdir(), 'flextide-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
  viewport: { width: 1280, height: 900 },
  timeout: 60_000,
});
const dialogs = [];
const confirms = [];
const pageErrors = [];
// The answer to a delete button's confirmation; any other dialog (a
// payload's script running) is recorded as a failure.
let confirmAnswer = null;
const page = context.pages()[0] || (await context.newPage());
try {
  page.setDefaultTimeout(30_000);
  page.on('dialog', (d) => {
    if (confirmAnswer && d.type() === 'confirm' && d.message().startsWith('Delete dead letter ')) {
      confirms.push(d.message());
      (confirmAnswer === 'accept' ? d.accept() : d.dismiss()).catch(() => {});
    } else {
      dialogs.push(d.message());
      d.dismiss().catch(() => {});
    }
  });
  page.on('pageerror', (e) => pageErrors.push(String(e)));

  const cell = (q, field) =>
    page.locator(`#queues tr[data-queue="${q}"] [data-field="${field}"]`).innerText();
  const card = (field) => page.locator(`[data-live="queue"] [data-field="${field}"]`).innerText();

  // 1. The overview: the counts on the page are stats()'s, also after a refresh.
  await page.goto(url + '/');
  for (const round of ['as served', 'after the live refresh']) {
    if (round !== 'as served') {
      await page.waitForFunction(() => document.body.dataset.refreshed, null, { timeout: 30_000 });
    }
    for (const [q, s] of Object.entries(expected)) {
      for (const f of ['ready', 'in_flight', 'delayed', 'dead_letters']) {
        check((await cell(q, f)) === String(s[f]), `overview ${round}: ${q} ${f} = ${s[f]}`);
      }
    }
  }
  await page.screenshot({ path: join(shots, 'overview.png'), fullPage: true });

  // 2. The queue page: the script payload and the reason are text.
  await page.click('#queues a[href$="/queues/orders"]');
  await page.waitForSelector('svg[data-chart="depth"] polyline', { state: 'attached' });
  const waitingText = await page.locator('#waiting').innerText();
  check(waitingText.includes(XSS), 'the <script> payload is shown as text in the waiting list');
  check((await page.locator('#dead-letters').innerText()).includes(XSS_REASON), 'the reason with markup is shown as text');
  check((await page.locator('script').count()) === 1, 'the page holds only its own script');
  check((await page.locator('main img').count()) === 0, 'no <img> came from a reason');
  await page.screenshot({ path: join(shots, 'queue.png'), fullPage: true });

  // 3. The payload view: escaped text; JSON pretty-printed; binary as hex.
  await page.locator('#waiting tr', { hasText: XSS }).locator('a').click();
  check((await page.locator('#payload').innerText()).trim() === XSS, 'payload view shows <script>alert(1)</script> as text');
  await page.screenshot({ path: join(shots, 'message.png'), fullPage: true });
  await page.goBack();
  await page.locator('#waiting tr', { hasText: 'send-invoice' }).locator('a').click();
  check((await page.locator('#payload').getAttribute('data-kind')) === 'json', 'a JSON payload is shown as JSON');
  check((await page.locator('#payload').innerText()).includes('\n  "step": "send-invoice"'), 'JSON is pretty-printed');
  await page.goBack();
  await page.locator('#waiting tr', { hasText: '(binary)' }).locator('a').click();
  check((await page.locator('#payload').innerText()).startsWith('00000000  de ad be ef'), 'binary is shown as hex');

  // 4. Replay one dead letter of emails from the page; its worker handles it.
  await page.goto(url + '/queues/emails');
  const before = Number(await card('dead_letters'));
  check(before === expected.emails.dead_letters, `emails shows ${before} dead letters`);
  await page.locator('#dead-letters tbody tr').first().locator('button[name="one"]:not([formaction])').click();
  check((await page.locator('.notice').innerText()).includes('Replayed 1 dead letter'), 'the page says one was replayed');
  let handled = false;
  for (let i = 0; i < 60 && !handled; i++) {
    await page.goto(url + '/queues/emails');
    handled = (await card('dead_letters')) === String(before - 1) && (await card('ready')) === '0' && (await card('in_flight')) === '0';
    if (!handled) await page.waitForTimeout(500);
  }
  check(handled, 'the replayed dead letter was handled by the worker (one dead letter less, nothing waiting)');

  // 5. Delete the other dead letter of emails from its row: refused at the
  // confirmation first (nothing deleted), then accepted.
  const row = page.locator('#dead-letters tbody tr');
  check((await row.count()) === 1, 'emails lists one dead letter');
  const deleteButton = row.first().locator('button[formaction$="/dead-letters/delete"]');
  confirmAnswer = 'dismiss';
  await deleteButton.click();
  await page.waitForTimeout(300);
  check(confirms.length === 1, 'the delete button asks first');
  check((await card('dead_letters')) === String(before - 1) && (await row.count()) === 1, 'a dismissed confirmation deletes nothing');
  confirmAnswer = 'accept';
  await Promise.all([page.waitForNavigation(), deleteButton.click()]);
  confirmAnswer = null;
  check(confirms.length === 2 && confirms[1].includes('of emails for good'), `the confirmation names the queue (${confirms[1]})`);
  check((await page.locator('.notice').innerText()).includes('Deleted 1 dead letter'), 'the page says one was deleted');
  check((await card('dead_letters')) === String(before - 2), 'emails has one dead letter less');
  check((await page.locator('#dead-letters').innerText()).includes('No dead letter.'), 'the deleted dead letter is no longer listed');

  // 6. Purge the dead letters of orders, with the confirmation.
  await page.goto(url + '/queues/orders');
  await page.click('text=Purge dead letters…');
  const question = await page.locator('#question').innerText();
  const n = expected.orders.dead_letters;
  check(question.includes(`${n} dead letters of orders`), `the confirmation names the queue and the count (${question})`);
  await page.screenshot({ path: join(shots, 'confirm.png'), fullPage: true });
  await page.fill('#confirm', 'emails');
  await page.click('form.confirm button[type="submit"]');
  check((await page.locator('p.error').innerText()).includes('confirm with the queue'), 'a wrong name purges nothing');
  await page.fill('#confirm', 'orders');
  await page.click('form.confirm button[type="submit"]');
  check((await page.locator('.notice').innerText()).includes(`Purged ${n} dead letters`), 'the page says they were purged');
  check((await card('dead_letters')) === '0', 'orders has no dead letter left');

  check(dialogs.length === 0, `no dialog was opened (${dialogs.join(', ')})`);
  check(pageErrors.length === 0, `no script error (${pageErrors.join(', ')})`);
  console.log('browser test: all checks passed');
} catch (e) {
  // What the browser showed when a check failed.
  console.log(`failed at ${page.url()}:\n${await page.locator('body').innerText().catch(() => '?')}`);
  await page.screenshot({ path: join(shots, 'failure.png'), fullPage: true }).catch(() => {});
  throw e;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
