// The README's picture of the page: docs/page.png.
//
//   node tests/web/screenshot.mjs GPT2_BINARY MODEL.bin OUT.png
//
// Samples "ROMEO:" at temperature 0.8 with seed 42, colours the tokens by probability and hovers
// one, so that the picture shows what the page is for.
import { spawn } from "node:child_process";
import { chromium } from "playwright-core";

const [gpt2, model, out] = process.argv.slice(2);
const server = spawn(gpt2, [model, "--serve", "--port", "0", "-q"], { stdio: ["ignore", "pipe", "inherit"] });
const url = await new Promise((resolve, reject) => {
  let text = "";
  server.stdout.on("data", (d) => { text += d; const m = text.match(/ at (http:\/\/\S+) /); if (m) resolve(m[1]); });
  server.on("exit", () => reject(new Error("the server exited")));
  setTimeout(() => reject(new Error("the server did not start")), 20000);
});
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 720 } });
  await page.goto(url);
  await page.waitForFunction(() => !document.querySelector("#model").textContent.includes("loading"));
  await page.fill("#prompt", "ROMEO:");
  await page.fill("#max-tokens", "90");
  await page.fill("#seed", "42");
  await page.click("#generate");
  await page.waitForFunction(() => !document.querySelector("#generate").disabled && document.querySelector("#stats").textContent.includes("tokens"));
  await page.click("#colorize");
  await page.locator("#output .tok").nth(9).hover();
  await page.waitForSelector("#tooltip", { state: "visible" });
  await page.screenshot({ path: out });
} finally {
  await browser.close();
  server.kill("SIGTERM");
}
