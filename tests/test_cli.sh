#!/bin/sh
# The command-line tool: its output contracts, and a one-line error with a non-zero exit
# for every kind of bad input.
#
#   tests/test_cli.sh GPT2_BINARY MODEL.bin [BAD_FILES_DIR]
#
# MODEL.bin is the tiny fixture (context 64, GPT-2 vocabulary). BAD_FILES_DIR holds the
# damaged models test_badfiles wrote; each must be refused the same way.
set -u
gpt2=$1
model=$2
bad_dir=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
checks=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# expect_error DESCRIPTION [ARGS...]: exit status 1, nothing on stdout, exactly one line on
# stderr, starting with "gpt2: ".
expect_error() {
    what=$1; shift
    checks=$((checks + 1))
    "$gpt2" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    status=$?
    lines=$(wc -l <"$tmp/err")
    if [ "$status" -ne 1 ]; then fail "$what: exit status $status, expected 1 ($(head -c 200 "$tmp/err"))"
    elif [ -s "$tmp/out" ]; then fail "$what: wrote to stdout"
    elif [ "$lines" -ne 1 ] || ! head -n 1 "$tmp/err" | grep -q '^gpt2: '; then fail "$what: stderr is not one 'gpt2: ' line: $(head -c 300 "$tmp/err")"
    fi
}

# expect_ok DESCRIPTION [ARGS...]: exit status 0; stdout in $tmp/out, stderr in $tmp/err.
expect_ok() {
    what=$1; shift
    checks=$((checks + 1))
    "$gpt2" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    status=$?
    [ "$status" -eq 0 ] || fail "$what: exit status $status: $(head -c 300 "$tmp/err")"
}

# --- help and usage -------------------------------------------------------------------
expect_ok "--help" --help
grep -q "usage: gpt2 MODEL.bin" "$tmp/out" || fail "--help prints the usage"
"$gpt2" >/dev/null 2>"$tmp/err"; [ $? -eq 2 ] || fail "no arguments: exit 2"
grep -q "usage" "$tmp/err" || fail "no arguments: usage on stderr"

# --- flags and values -----------------------------------------------------------------
expect_error "unknown flag" "$model" "hi" --bogus
expect_error "unknown short flag" "$model" "hi" -x
expect_error "missing value" "$model" "hi" -n
for v in -1 abc "" 1.5 99999999999; do expect_error "-n '$v'" "$model" "hi" -n "$v"; done
for v in -1 x 2.5; do expect_error "-k '$v'" "$model" "hi" -k "$v"; done
for v in -0.5 nan inf abc ""; do expect_error "-t '$v'" "$model" "hi" -t "$v"; done
for v in 1.5 -1 abc nan; do expect_error "-p '$v'" "$model" "hi" -p "$v"; done
for v in -0.1 2 x; do expect_error "--min-p '$v'" "$model" "hi" --min-p "$v"; done
for v in 0 -1 abc 5000; do expect_error "--threads '$v'" "$model" "hi" --threads "$v"; done
for v in -1 abc 1e3; do expect_error "-s '$v'" "$model" "hi" -s "$v"; done
for v in f8 q8_0 bf16 F16 ""; do expect_error "--kv '$v'" "$model" "hi" --kv "$v"; done
expect_error "extra positional argument" "$model" "hi" "there"
# an f16 KV cache: the same text on any thread count
expect_ok "--kv f16, 1 thread" "$model" "The" -n 24 -t 0.8 -s 7 --kv f16 --threads 1
cp "$tmp/out" "$tmp/kv1"
expect_ok "--kv f16, 3 threads" "$model" "The" -n 24 -t 0.8 -s 7 --kv=f16 --threads 3
cmp -s "$tmp/out" "$tmp/kv1" || fail "--kv f16: 1 and 3 threads wrote different text"
expect_error "two prompts" "$model" "hi" -f "$tmp/nothing"
expect_error "missing prompt file" "$model" -f "$tmp/does-not-exist"

# --- the model file -------------------------------------------------------------------
expect_error "missing model" "$tmp/no-such-model.bin" "hi"
expect_error "directory as model" "$tmp" "hi"
: >"$tmp/empty.bin"
expect_error "empty model" "$tmp/empty.bin" "hi"
if [ -n "$bad_dir" ]; then
    n_bad=0
    for f in "$bad_dir"/*.bin; do
        expect_error "damaged model $(basename "$f")" "$f" "hi" -n 1
        n_bad=$((n_bad + 1))
    done
    [ "$n_bad" -gt 50 ] || fail "expected the damaged models in $bad_dir, found $n_bad"
fi

# --- --ids and --logits ---------------------------------------------------------------
expect_error "--ids out of vocabulary" "$model" --ids 464,50257 -n 0
expect_error "--ids negative" "$model" --ids -1 -n 0
expect_error "--ids empty item" "$model" --ids 1,,2 -n 0
expect_error "--ids not numbers" "$model" --ids abc -n 0
expect_error "--ids trailing comma" "$model" --ids 1,2, -n 0
ids65=$(seq -s, 1 65)
expect_error "--ids longer than the context" "$model" --ids "$ids65" -n 0
expect_error "--ids and a prompt" "$model" "hi" --ids 1
expect_ok "--ids --logits" "$model" --ids 464,3290,318 --logits "$tmp/logits.f32" -n 0
[ -s "$tmp/out" ] && fail "--logits -n 0 writes nothing to stdout"
size=$(wc -c <"$tmp/logits.f32")
[ "$size" -eq $((3 * 50257 * 4)) ] || fail "--logits wrote $size bytes, expected 3 x 50257 x 4"
ids64=$(seq -s, 1 64)
expect_ok "--ids filling the context" "$model" --ids "$ids64" --logits "$tmp/logits.f32" -n 0
expect_error "--logits to an unwritable path" "$model" --ids 1 --logits "$tmp/no/such/dir/x.f32" -n 0

# --- prompts ----------------------------------------------------------------------------
long=$(yes "word" | head -n 100 | tr '\n' ' ')
expect_error "prompt longer than the context" "$model" "$long" -n 1
grep -q "is [0-9]* tokens, longer than the model's context of 64" "$tmp/err" || fail "prompt length error names both lengths: $(cat "$tmp/err")"
printf 'caf\303\251 \377 bad' >"$tmp/invalid.txt"
expect_error "invalid UTF-8 prompt" "$model" -f "$tmp/invalid.txt" -n 1
grep -q "UTF-8" "$tmp/err" || fail "invalid UTF-8 error says so"
printf 'overlong \300\257' >"$tmp/overlong.txt"
expect_error "overlong UTF-8 prompt" "$model" -f "$tmp/overlong.txt" -n 1
printf 'surrogate \355\240\200' >"$tmp/surrogate.txt"
expect_error "UTF-8 surrogate prompt" "$model" -f "$tmp/surrogate.txt" -n 1

# --- greedy output: exactly the prompt, the continuation and one newline ------------------
expect_ok "greedy" "$model" "Hello world" -n 12 -t 0
cp "$tmp/out" "$tmp/greedy1"
head -c 11 "$tmp/greedy1" | grep -q "^Hello world$" || fail "greedy output starts with the prompt"
[ "$(tail -c 1 "$tmp/greedy1" | od -An -c | tr -d ' ')" = '\n' ] || fail "greedy output ends with a newline"
grep -q "generated 12 tokens" "$tmp/err" || fail "stats on stderr: $(cat "$tmp/err")"
expect_ok "greedy again, 1 thread" "$model" "Hello world" -n 12 -t 0 --threads 1 -q
cmp -s "$tmp/greedy1" "$tmp/out" || fail "greedy text depends on the thread count"
[ -s "$tmp/err" ] && fail "-q: stderr not empty: $(cat "$tmp/err")"
expect_ok "greedy, 3 threads" "$model" "Hello world" -n 12 -t 0 --threads 3 -q
cmp -s "$tmp/greedy1" "$tmp/out" || fail "greedy text with 3 threads differs"
expect_ok "-n 0" "$model" "Hello world" -n 0 -q
[ "$(cat "$tmp/out")" = "Hello world" ] || fail "-n 0 prints the prompt"
printf 'Hello world' >"$tmp/prompt.txt"
expect_ok "-f FILE" "$model" -f "$tmp/prompt.txt" -n 12 -t 0 -q
cmp -s "$tmp/greedy1" "$tmp/out" || fail "-f FILE gives the same text as the argument"
checks=$((checks + 1))
"$gpt2" "$model" -f - -n 12 -t 0 -q <"$tmp/prompt.txt" >"$tmp/out" 2>"$tmp/err" || fail "-f -: $(cat "$tmp/err")"
cmp -s "$tmp/greedy1" "$tmp/out" || fail "-f - (stdin) gives the same text as the argument"
expect_ok "-- before a prompt starting with a dash" "$model" -n 2 -t 0 -q -- "-dash"
head -c 5 "$tmp/out" | grep -q "^-dash$" || fail "prompt after --"
expect_ok "--n-predict=N form" "$model" "Hi" --n-predict=3 --temp=0 -q
expect_ok "no prompt: starts from <|endoftext|>" "$model" -n 5 -s 1 -q

# --- seeds ------------------------------------------------------------------------------
expect_ok "seed 42" "$model" "Once upon a time" -n 30 -t 1 -s 42 -q
cp "$tmp/out" "$tmp/seed42"
expect_ok "seed 42, 1 thread" "$model" "Once upon a time" -n 30 -t 1 -s 42 --threads 1 -q
cmp -s "$tmp/seed42" "$tmp/out" || fail "same seed, 1 thread: different text"
expect_ok "seed 42, 3 threads" "$model" "Once upon a time" -n 30 -t 1 -s 42 --threads 3 -q
cmp -s "$tmp/seed42" "$tmp/out" || fail "same seed, 3 threads: different text"
expect_ok "seed 43" "$model" "Once upon a time" -n 30 -t 1 -s 43 -q
cmp -s "$tmp/seed42" "$tmp/out" && fail "seeds 42 and 43 gave the same text"
expect_ok "default seed is reported" "$model" "Hi" -n 2
grep -q "seed [0-9]" "$tmp/err" || fail "stats report the seed"

# --- sampling filters together: each applies to what the one before kept -------------------
expect_ok "top-k 2 then top-p 0.1" "$model" "Hi" -t 1 -k 2 -p 0.1 -n 20 -s 7 -q
cp "$tmp/out" "$tmp/k2p01"
expect_ok "top-k 1" "$model" "Hi" -t 1 -k 1 -n 20 -s 7 -q
cmp -s "$tmp/k2p01" "$tmp/out" || fail "top-k 2 then top-p 0.1 keeps only the most likely token: same text as top-k 1"
expect_ok "greedy, for comparison" "$model" "Hi" -t 0 -n 20 -q
cmp -s "$tmp/k2p01" "$tmp/out" || fail "top-k 1 is greedy"
expect_ok "-p 0 is off" "$model" "Hi" -t 1 -k 0 -p 0 -n 20 -s 9 -q
cp "$tmp/out" "$tmp/p0"
expect_ok "-p 1 is off" "$model" "Hi" -t 1 -k 0 -p 1 -n 20 -s 9 -q
cmp -s "$tmp/p0" "$tmp/out" || fail "-p 0 and -p 1 both turn top-p off"
expect_ok "all filters at once" "$model" "Hi" -t 0.7 -k 30 -p 0.8 --min-p 0.05 -n 30 -s 3 -q
cp "$tmp/out" "$tmp/all"
expect_ok "all filters at once, 3 threads" "$model" "Hi" -t 0.7 -k 30 -p 0.8 --min-p 0.05 -n 30 -s 3 --threads 3 -q
cmp -s "$tmp/all" "$tmp/out" || fail "all filters: the thread count changed the text"

# --- the context fills up: a note, and exit 0 ---------------------------------------------
expect_ok "context full" "$model" "Hello world" -n 200 --ignore-eot -s 1
grep -q "context is full" "$tmp/err" || fail "context full: note on stderr: $(cat "$tmp/err")"

# --- tokenize and bench modes --------------------------------------------------------------
printf 'Hello world' >"$tmp/hw.txt"
expect_ok "--tokenize" "$model" --tokenize "$tmp/hw.txt"
[ "$(cat "$tmp/out")" = "15496 995" ] || fail "--tokenize 'Hello world': got '$(cat "$tmp/out")'"
expect_ok "--bench" "$model" --bench --threads 1
grep -q "^load" "$tmp/out" && grep -q "prefill 128" "$tmp/out" && grep -qE "^1 +[-0-9. ]+ [0-9.]+ of [0-9.]+ \(" "$tmp/out" ||
    fail "--bench output: $(cat "$tmp/out")"
expect_ok "--bench --json" "$model" --bench --json
n_lines=$(wc -l <"$tmp/out")
[ "$n_lines" -ge 1 ] && [ "$n_lines" -le 2 ] || fail "--bench --json: $n_lines lines"
for key in threads dtype load_ms prefill128_tps prefill512_tps decode_tps decode512_tps peak_rss_mb decode_gbps machine_gbps; do
    [ "$(grep -c "\"$key\": " "$tmp/out")" -eq "$n_lines" ] || fail "--bench --json: no \"$key\" on every line: $(cat "$tmp/out")"
done
grep -q '"dtype": "f32"' "$tmp/out" || fail "--bench --json: dtype"
grep -q '"kv": "f32"' "$tmp/out" || fail "--bench --json: kv"
expect_ok "--bench --json --kv f16" "$model" --bench --json --threads 1 --kv f16
grep -q '"kv": "f16"' "$tmp/out" || fail "--bench --json --kv f16: $(cat "$tmp/out")"
if command -v node >/dev/null; then
    node -e 'for (const l of require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n")) JSON.parse(l)' "$tmp/out" ||
        fail "--bench --json is not JSON lines"
fi
expect_error "--json without --bench" "$model" "hi" --json

if [ "$failures" -ne 0 ]; then echo "test_cli: $failures of $checks checks failed ($gpt2)"; exit 1; fi
echo "test_cli: ok, $checks checks ($gpt2)"
