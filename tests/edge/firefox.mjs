// node tests/edge/firefox.mjs URL IMAGE...
//
// Opens URL (a nin-edge web page, from `nin-export --web`) in headless Firefox, driven by puppeteer-core
// over WebDriver BiDi, waits until the page says its model is loaded, gives it each IMAGE in turn through
// its own file input (#file) and prints one JSON object:
//   {"browser", "state", "status", "threads", "results": [{"file", "top1", "probs", "backend"} | {"file", "error"}],
//    "errors": [uncaught page errors and console errors]}
// Exit status 0 when it ran to the end (the caller judges the answers), 1 when the browser could not.
//
// Firefox is Debian's firefox-esr (NIN_EDGE_FIREFOX to name another); puppeteer's own browser download is
// never used (npm installs puppeteer-core with PUPPETEER_SKIP_DOWNLOAD=1). puppeteer-core is web/'s dev
// dependency, resolved from web/node_modules.
import { createRequire } from 'node:module';

const puppeteer = createRequire(new URL('../../web/package.json', import.meta.url))('puppeteer-core');

const [url, ...images] = process.argv.slice(2);
if (!url) {
  console.error('usage: node tests/edge/firefox.mjs URL IMAGE...');
  process.exit(2);
}
const timeout = 120_000;
const browser = await puppeteer.launch({
  browser: 'firefox', // WebDriver BiDi: puppeteer's protocol for Firefox
  executablePath: process.env.NIN_EDGE_FIREFOX || '/usr/bin/firefox-esr',
  headless: true,
});
let code = 1;
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(String(err)));
  page.on('console', (msg) => { if (msg.type() === 'error') errors.push(msg.text()); });
  const response = await page.goto(url, { waitUntil: 'load', timeout });
  if (!response || !response.ok()) throw new Error(`HTTP ${response ? response.status() : 'no response'} for ${url}`);
  await page.waitForFunction(
    () => ['ready', 'error'].includes(document.getElementById('status').dataset.state), { timeout });
  const [state, status, threads] = await page.evaluate(() => [
    document.getElementById('status').dataset.state,
    document.getElementById('status').innerText,
    document.getElementById('threads').innerText,
  ]);
  const results = [];
  const input = await page.$('#file');
  for (const image of state === 'ready' ? images : []) {
    const seq = await page.$eval('#result', (el) => el.dataset.seq || '0');
    await input.uploadFile(image);
    await page.waitForFunction(
      (s) => (document.getElementById('result').dataset.seq || '0') !== s
        || document.getElementById('status').dataset.state === 'error', { timeout }, seq);
    results.push(await page.evaluate((file) => {
      const status = document.getElementById('status');
      if (status.dataset.state === 'error') return { file, error: status.innerText };
      const r = document.getElementById('result').dataset;
      return { file, top1: Number(r.top1), probs: JSON.parse(r.probs), backend: r.backend };
    }, image));
  }
  console.log(JSON.stringify({ browser: await browser.version(), state, status, threads, results, errors }));
  code = 0;
} catch (err) {
  console.error(`error: ${err.message}`);
} finally {
  await browser.close();
}
process.exit(code);
