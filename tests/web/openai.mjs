// OpenAI's own client library against gpt2 --serve: a completion, a streamed one, logprobs.
//
//   node tests/web/openai.mjs GPT2_BINARY MODEL.bin
import { spawn, execFileSync } from "node:child_process";
import OpenAI from "openai";

const [gpt2, model] = process.argv.slice(2);
let failures = 0;
const check = (ok, what) => { if (!ok) { console.log(`FAIL ${what}`); failures++; } };
const server = spawn(gpt2, [model, "--serve", "--port", "0", "-q"], { stdio: ["ignore", "pipe", "inherit"] });
const url = await new Promise((resolve, reject) => {
  let out = "";
  server.stdout.on("data", (d) => { out += d; const m = out.match(/ at (http:\/\/\S+) /); if (m) resolve(m[1]); });
  server.on("exit", () => reject(new Error("the server exited")));
  setTimeout(() => reject(new Error("the server did not start")), 20000);
});
try {
  const client = new OpenAI({ baseURL: `${url}v1`, apiKey: "not-needed", maxRetries: 0 });
  const prompt = "ROMEO:";
  const cli = execFileSync(gpt2, [model, prompt, "-n", "20", "-t", "0", "-q"]).toString().replace(/\n$/, "").slice(prompt.length);

  const models = await client.models.list();
  check(models.data.length === 1 && models.data[0].object === "model", `models.list: ${JSON.stringify(models.data)}`);

  const r = await client.completions.create({ model: models.data[0].id, prompt, max_tokens: 20, temperature: 0, logprobs: 3 });
  check(r.choices[0].text === cli, `completion ${JSON.stringify(r.choices[0].text)}, the command line ${JSON.stringify(cli)}`);
  check(r.choices[0].logprobs.tokens.length === r.usage.completion_tokens, "a logprob per token");
  check(r.choices[0].logprobs.token_logprobs.every((x) => x <= 0), "log-probabilities are <= 0");
  check(r.choices[0].logprobs.top_logprobs.every((t) => Object.keys(t).length >= 3), "3 alternatives per token");

  let streamed = "", chunks = 0, finish = null;
  const stream = await client.completions.create({ model: "gpt2.c", prompt, max_tokens: 20, temperature: 0, stream: true });
  for await (const chunk of stream) {
    streamed += chunk.choices[0]?.text ?? "";
    chunks++;
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  check(streamed === cli && chunks > 5 && finish, `streamed ${JSON.stringify(streamed)} in ${chunks} chunks (${finish})`);

  try {
    await client.completions.create({ model: "x", prompt, max_tokens: 20, temperature: 9 });
    check(false, "temperature 9 accepted");
  } catch (e) {
    check(e.status === 400 && e.param === "temperature", `a bad request raises the client's error: ${e.status} ${e.message}`);
  }
} finally {
  server.kill("SIGTERM");
}
if (failures) { console.log(`openai client test: ${failures} failures`); process.exit(1); }
console.log("openai client test: ok (completion, stream, logprobs, errors through the official library)");
