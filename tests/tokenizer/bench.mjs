// bench.mjs — encode throughput of gpt2.c's tokenizer, js-tiktoken and tiktoken (WebAssembly)
// on the same texts, in one run, side by side.
//
//   node tests/tokenizer/bench.mjs "build/test_tokenizer --bench build/tiny.bin" FILE...
//
// The first argument is the command that prints gpt2.c's numbers (tests/test_tokenizer.c
// --bench); the script runs it on each file, then times the two npm packages on the same
// text: best of several runs after a warm-up, about two seconds each. All three must agree
// on the number of tokens (the ids themselves are checked by `make test`).
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { getEncoding } from 'js-tiktoken';
import { get_encoding } from 'tiktoken';

const [command, ...files] = process.argv.slice(2);
if (!command || files.length === 0) {
  console.error('usage: node bench.mjs "GPT2_BENCH_COMMAND" FILE...');
  process.exit(2);
}

function best(encode) {
  let n = encode().length;  // warm-up
  let fastest = Infinity, total = 0;
  for (let run = 0; run < 20 && (run < 3 || total < 2000); run++) {
    const t0 = performance.now();
    n = encode().length;
    const ms = performance.now() - t0;
    fastest = Math.min(fastest, ms);
    total += ms;
  }
  return { n, ms: fastest };
}

const js = getEncoding('gpt2');
const wasm = get_encoding('gpt2');
const [program, ...args] = command.split(' ');
let disagree = false;
const rows = [];
for (const file of files) {
  const bytes = fs.readFileSync(file);
  const text = bytes.toString('utf8');
  const out = execFileSync(program, [...args, file], { encoding: 'utf8' });
  const m = out.match(/(\d+) tokens\s+gpt2\.c\s+([\d.]+) MB\/s/);
  if (!m) throw new Error(`unexpected output from ${command}: ${out}`);
  const ours = { n: +m[1], mbs: +m[2] };
  const a = best(() => js.encode(text, [], []));
  const b = best(() => wasm.encode_ordinary(text));
  const mbs = (r) => bytes.length / r.ms / 1e3;
  rows.push([file, bytes.length, ours.n, ours.mbs, mbs(a), mbs(b)]);
  if (a.n !== ours.n || b.n !== ours.n) {
    disagree = true;
    console.error(`${file}: token counts differ: gpt2.c ${ours.n}, js-tiktoken ${a.n}, tiktoken ${b.n}`);
  }
}
wasm.free();

console.log('encode throughput, MB/s (best run; other processes on the machine add noise)');
console.log(`${'text'.padEnd(36)} ${'bytes'.padStart(9)} ${'tokens'.padStart(8)} ${'gpt2.c'.padStart(8)} ` +
            `${'js-tiktoken'.padStart(12)} ${'tiktoken-wasm'.padStart(14)}`);
for (const [file, size, n, ours, a, b] of rows)
  console.log(`${file.padEnd(36)} ${String(size).padStart(9)} ${String(n).padStart(8)} ${ours.toFixed(1).padStart(8)} ` +
              `${a.toFixed(1).padStart(12)} ${b.toFixed(1).padStart(14)}`);
process.exit(disagree ? 1 : 0);
