// The page in a real browser: Debian's chromium driven by playwright-core.
//
//   node tests/web/browser.mjs GPT2_BINARY MODEL.bin OUT_DIR
//
// Opens the page gpt2 --serve serves, types a prompt, sets temperature 0, presses Generate and
// checks the streamed text against the command line's greedy output; hovers a token and checks
// its probability against the API's logprob; colours tokens; presses Stop mid-stream (the network
// slowed down so that there is a middle); and saves screenshots, desktop and phone-sized.
import { spawn, execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const [gpt2, model, outDir] = process.argv.slice(2);
mkdirSync(outDir, { recursive: true });
const prompt = "ROMEO:", n = 60;
let failures = 0;
const check = (ok, what) => { if (!ok) { console.log(`FAIL ${what}`); failures++; } };

const server = spawn(gpt2, [model, "--serve", "--port", "0", "-q"], { stdio: ["ignore", "pipe", "inherit"] });
const url = await new Promise((resolve, reject) => {
  let out = "";
  server.stdout.on("data", (d) => { out += d; const m = out.match(/ at (http:\/\/\S+) /); if (m) resolve(m[1]); });
  server.on("exit", () => reject(new Error("the server exited")));
  setTimeout(() => reject(new Error("the server did not start")), 20000);
});
const cli = execFileSync(gpt2, [model, prompt, "-n", String(n), "-t", "0", "-q"]).toString().replace(/\n$/, "");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 860 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(url);
  await page.waitForFunction(() => !document.querySelector("#model").textContent.includes("loading"));

  // greedy generation = the command line's
  await page.fill("#prompt", prompt);
  await page.$eval("#temperature", (el) => { el.value = "0"; el.dispatchEvent(new Event("input")); });
  await page.fill("#max-tokens", String(n));
  await page.click("#generate");
  await page.waitForFunction(() => !document.querySelector("#generate").disabled && document.querySelector("#stats").textContent.includes("tokens"));
  const shown = await page.$eval("#output", (el) => el.textContent);
  check(shown === cli, `the page shows ${JSON.stringify(shown)}, the command line ${JSON.stringify(cli)}`);
  const stats = await page.$eval("#stats", (el) => el.textContent);
  check(/tokens\/s/.test(stats), `tokens/s shown: ${stats}`);

  // hover a token: its probability, as the API reports it
  const token = page.locator("#output .tok").nth(3);
  await token.hover();
  await page.waitForSelector("#tooltip", { state: "visible" });
  const tip = await page.$eval("#tooltip", (el) => el.textContent);
  const info = JSON.parse(await token.getAttribute("data-info"));
  const percent = (100 * Math.exp(info.logprob)).toFixed(2) + "%";
  check(tip.includes(percent), `the tooltip shows ${percent}: ${tip}`);
  check((await page.$$("#tooltip tr")).length >= 5, "the tooltip lists the alternatives");
  await page.screenshot({ path: `${outDir}/page-tooltip.png` });

  // colours by probability
  await page.click("#colorize");
  const background = await token.evaluate((el) => el.style.backgroundColor);
  check(background.startsWith("hsla") || background.startsWith("rgba"), `coloured token: ${background}`);
  await page.mouse.move(5, 5);
  await page.screenshot({ path: `${outDir}/page.png` });

  // Stop, mid-stream: the network slowed to a trickle so the stream lasts
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 50, downloadThroughput: 3000, uploadThroughput: 100000 });
  await page.$eval("#temperature", (el) => { el.value = "1"; el.dispatchEvent(new Event("input")); });
  await page.fill("#max-tokens", "180");
  await page.click("#generate");
  await page.waitForFunction(() => document.querySelectorAll("#output .tok").length >= 3, null, { timeout: 30000 });
  await page.click("#stop");
  await page.waitForFunction(() => !document.querySelector("#generate").disabled);
  const stopped = await page.$$eval("#output .tok", (els) => els.length);
  check(stopped < 180, `Stop ended the stream after ${stopped} tokens`);
  check(await page.$eval("#error", (el) => el.textContent === ""), "no error after Stop");
  await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  const health = await page.evaluate(async () => (await fetch("/health")).status);
  check(health === 200, "the server goes on after Stop");

  // a phone-sized screen
  const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  await phone.goto(url);
  await phone.$eval("#temperature", (el) => { el.value = "0"; el.dispatchEvent(new Event("input")); });
  await phone.fill("#max-tokens", "40");
  await phone.click("#generate");
  await phone.waitForFunction(() => !document.querySelector("#generate").disabled && document.querySelectorAll("#output .tok").length > 0);
  await phone.locator("#output .tok").nth(2).tap();
  await phone.waitForSelector("#tooltip", { state: "visible" });
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  check(!overflow, "the page fits a phone's width");
  await phone.screenshot({ path: `${outDir}/page-phone.png` });
  check(errors.length === 0, `no errors in the page's console: ${errors.join("; ")}`);
} finally {
  await browser.close();
  server.kill("SIGTERM");
}
if (failures) { console.log(`browser test: ${failures} failures`); process.exit(1); }
console.log(`browser test: ok (greedy text = the command line's, tooltip, colours, Stop, phone; screenshots in ${outDir})`);
