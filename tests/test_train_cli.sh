#!/bin/sh
# train_gpt2's command line: the usage contract, resuming exactly, Ctrl-C, bad input, and a
# short run from scratch on tinyshakespeare.
#
#   tests/test_train_cli.sh TRAIN_GPT2 GPT2 TINY_MODEL.bin BAD_MODEL.bin [TINYSHAKESPEARE.txt]
#
# TINY_MODEL.bin is the tiny fixture (GPT-2's vocabulary, context 64); BAD_MODEL.bin a damaged
# model file (test_badfiles writes them).
set -u
train=$1 gpt2=$2 tiny=$3 bad_model=$4 shakespeare=${5:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0 checks=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# a text of ~40 KB: the tokenizer's Unicode sample, so this runs without ../shared
head -c 40000 tests/tokenizer/unicode_text.txt >"$tmp/text.txt"

# expect_error DESCRIPTION ARGS...: exit 1, one "train_gpt2: " line on stderr
expect_error() {
    what=$1; shift
    checks=$((checks + 1))
    "$train" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    status=$?
    if [ "$status" -ne 1 ]; then fail "$what: exit status $status, expected 1 ($(head -c 300 "$tmp/err"))"
    elif [ "$(wc -l <"$tmp/err")" -ne 1 ] || ! grep -q '^train_gpt2: ' "$tmp/err"; then fail "$what: stderr: $(head -c 300 "$tmp/err")"
    fi
}

# --- the usage contract ----------------------------------------------------------------------
checks=$((checks + 1))
"$train" --init "$tiny" --data "$tmp/text.txt" --batch 2 --seq 16 --steps 5 --lr 1e-4 --wd 0 --sequential \
    --out "$tmp/contract.bin" >"$tmp/contract.log" 2>&1 || fail "contract run: $(tail -3 "$tmp/contract.log")"
steps=$(grep -av val "$tmp/contract.log" | grep -ac 'step [0-9]* *.*loss [0-9.]*')
[ "$steps" -eq 5 ] || fail "contract: $steps step lines, expected 5"
for k in 1 2 3 4 5; do grep -av val "$tmp/contract.log" | grep -aq "step $k[/ ].*loss [0-9]" || fail "contract: no line for step $k"; done
grep -aq "val" "$tmp/contract.log" || fail "contract: no validation line"
"$gpt2" "$tmp/contract.bin" "Hello" -n 4 -t 0 -q >/dev/null 2>"$tmp/err" || fail "contract: the model does not run: $(cat "$tmp/err")"
for f in contract.state contract.best.bin contract.loss.csv contract.loss.svg; do [ -s "$tmp/$f" ] || fail "contract: no $f"; done
grep -q '^<svg' "$tmp/contract.loss.svg" && grep -q 'polyline' "$tmp/contract.loss.svg" || fail "contract: the SVG has no plot"
[ "$(wc -l <"$tmp/contract.loss.csv")" -eq 6 ] || fail "contract: the CSV has $(wc -l <"$tmp/contract.loss.csv") lines, expected 6"

# --- a resumed run equals an uninterrupted one, bit for bit ----------------------------------
# random batches, warmup and cosine decay, clipping, weight decay: all of it must carry over
args="--init $tiny --data $tmp/text.txt --batch 2 --seq 16 --steps 8 --lr 1e-3 --min-lr 1e-4 --warmup 2 --wd 0.1 --clip 1 --eval-every 3 --seed 7"
checks=$((checks + 1))
# shellcheck disable=SC2086
"$train" $args --out "$tmp/whole.bin" >"$tmp/whole.log" 2>&1 || fail "uninterrupted run: $(tail -2 "$tmp/whole.log")"
# shellcheck disable=SC2086
"$train" $args --out "$tmp/parts.bin" --stop-at 4 >"$tmp/part1.log" 2>&1 || fail "run to step 4: $(tail -2 "$tmp/part1.log")"
grep -aq "stopped after step 4" "$tmp/part1.log" || fail "--stop-at 4: $(tail -1 "$tmp/part1.log")"
"$train" --resume "$tmp/parts.bin" --data "$tmp/text.txt" >"$tmp/part2.log" 2>&1 || fail "resume: $(tail -2 "$tmp/part2.log")"
grep -a '^step [5-8]/' "$tmp/whole.log" | sed 's/ | [0-9]* tok\/s.*//' >"$tmp/a"
grep -a '^step [5-8]/' "$tmp/part2.log" | sed 's/ | [0-9]* tok\/s.*//' >"$tmp/b"
[ -s "$tmp/a" ] && cmp -s "$tmp/a" "$tmp/b" || fail "resumed losses differ: $(diff "$tmp/a" "$tmp/b" | head -4)"
grep -a "val step [4-8]" "$tmp/whole.log" >"$tmp/a"; grep -a "val step [4-8]" "$tmp/part2.log" >"$tmp/b"
cmp -s "$tmp/a" "$tmp/b" || fail "resumed validation losses differ"
cmp -s "$tmp/whole.bin" "$tmp/parts.bin" || fail "the resumed run's model differs from the uninterrupted one's"
cut -d, -f1-5 "$tmp/whole.loss.csv" >"$tmp/a"; cut -d, -f1-5 "$tmp/parts.loss.csv" >"$tmp/b"
cmp -s "$tmp/a" "$tmp/b" || fail "resumed loss curve differs"  # (tokens/s, the last column, may)
expect_error "resume a finished run" --resume "$tmp/whole.bin" --data "$tmp/text.txt"
expect_error "resume with other data" --resume "$tmp/parts.bin" --data "$tiny" --steps 12
cp "$tmp/parts.bin" "$tmp/stale.bin"; cp "$tmp/contract.state" "$tmp/stale.state"
expect_error "resume with another run's state" --resume "$tmp/stale.bin" --data "$tmp/text.txt" --steps 12

# --- Ctrl-C: finish the step, save, exit 130; the checkpoint loads and resumes ----------------
checks=$((checks + 1))
"$train" --init "$tiny" --data "$tmp/text.txt" --batch 2 --seq 16 --steps 100000 --checkpoint-every 3 --eval-every 0 \
    --out "$tmp/int.bin" >"$tmp/int.log" 2>&1 &
pid=$!
i=0
while [ ! -s "$tmp/int.state" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
kill -INT $pid
wait $pid
status=$?
[ "$status" -eq 130 ] || fail "SIGINT: exit status $status, expected 130"
grep -aq "interrupted after step" "$tmp/int.log" || fail "SIGINT: no message: $(tail -2 "$tmp/int.log")"
"$gpt2" "$tmp/int.bin" "Hi" -n 2 -t 0 -q >/dev/null 2>&1 || fail "SIGINT: the checkpoint does not load"
done_steps=$(sed -n 's/^interrupted after step \([0-9]*\).*/\1/p' "$tmp/int.log")
"$train" --resume "$tmp/int.bin" --data "$tmp/text.txt" --steps $((done_steps + 2)) >"$tmp/int2.log" 2>&1 ||
    fail "resume after SIGINT: $(tail -2 "$tmp/int2.log")"
grep -aq "^step $((done_steps + 2))/" "$tmp/int2.log" || fail "resume after SIGINT did not run steps $((done_steps + 1))-$((done_steps + 2))"

# --- bad input: one line, exit 1, an existing model untouched -------------------------------------
: >"$tmp/empty.txt"
printf 'tiny' >"$tmp/short.txt"
cp "$tiny" "$tmp/keep.bin"
base="--init $tiny --batch 2 --seq 16 --steps 2"
# shellcheck disable=SC2086
{
expect_error "no --data" --init "$tiny" --out "$tmp/x.bin"
expect_error "missing data file" $base --data "$tmp/none.txt" --out "$tmp/x.bin"
expect_error "empty data" $base --data "$tmp/empty.txt" --out "$tmp/x.bin"
expect_error "data shorter than a batch" $base --data "$tmp/short.txt" --out "$tmp/x.bin"
expect_error "--seq past the context" --init "$tiny" --data "$tmp/text.txt" --seq 65 --out "$tmp/x.bin"
expect_error "model that does not load" --init "$tmp/none.bin" --data "$tmp/text.txt" --out "$tmp/x.bin"
expect_error "damaged model" --init "$bad_model" --data "$tmp/text.txt" --out "$tmp/x.bin"
expect_error "negative learning rate" $base --data "$tmp/text.txt" --lr -1 --out "$tmp/x.bin"
expect_error "NaN learning rate" $base --data "$tmp/text.txt" --lr nan --out "$tmp/x.bin"
expect_error "batch 0" --init "$tiny" --data "$tmp/text.txt" --batch 0 --out "$tmp/x.bin"
expect_error "steps 0" --init "$tiny" --data "$tmp/text.txt" --steps 0 --out "$tmp/x.bin"
expect_error "--min-lr above --lr" $base --data "$tmp/text.txt" --lr 1e-4 --min-lr 1e-3 --out "$tmp/x.bin"
expect_error "beta1 of 1" $base --data "$tmp/text.txt" --beta1 1 --out "$tmp/x.bin"
expect_error "unknown option" $base --data "$tmp/text.txt" --bogus 1 --out "$tmp/x.bin"
expect_error "option without value" $base --data "$tmp/text.txt" --out
expect_error "stray argument" $base --data "$tmp/text.txt" --out "$tmp/x.bin" stray
expect_error "vocabulary too small" --data "$tmp/text.txt" --vocab 100 --layers 1 --heads 1 --embd 8 --ctx 8 --out "$tmp/x.bin"
expect_error "new model without its shape" --data "$tmp/text.txt" --vocab 300 --out "$tmp/x.bin"
expect_error "new model without a tokenizer" --data "$tmp/text.txt" --layers 1 --heads 1 --embd 8 --ctx 8 --out "$tmp/x.bin"
expect_error "heads not dividing channels" --data "$tmp/text.txt" --vocab 300 --layers 1 --heads 3 --embd 8 --ctx 8 --out "$tmp/x.bin"
expect_error "--init with a shape" $base --data "$tmp/text.txt" --layers 3 --out "$tmp/x.bin"
expect_error "unwritable output" $base --data "$tmp/text.txt" --out "$tmp/no/such/dir/x.bin"
}
# a disk that fills up mid-write: the file-size limit stops the model file part way through
checks=$((checks + 1))
(ulimit -f 2000; "$train" $base --data "$tmp/text.txt" --out "$tmp/keep.bin" >"$tmp/out" 2>"$tmp/err")
status=$?
[ "$status" -eq 1 ] && grep -q "^train_gpt2: .*write failed" "$tmp/err" || fail "full disk: status $status: $(head -c 300 "$tmp/err")"
cmp -s "$tiny" "$tmp/keep.bin" || fail "full disk: the existing model was damaged"
[ -e "$tmp/keep.bin.tmp" ] && fail "full disk: a temporary file was left behind"

# --- from scratch on tinyshakespeare: the loss goes down, the model runs --------------------------
if [ -n "$shakespeare" ] && [ -s "$shakespeare" ]; then
    checks=$((checks + 1))
    start=$(date +%s)
    "$train" --data "$shakespeare" --vocab 512 --layers 2 --heads 4 --embd 128 --ctx 64 --batch 16 --steps 50 \
        --lr 3e-3 --warmup 5 --eval-every 25 --eval-batches 8 --out "$tmp/scratch.bin" >"$tmp/scratch.log" 2>&1 ||
        fail "from scratch: $(tail -3 "$tmp/scratch.log")"
    first=$(sed -n 's/^step 1\/50 | loss \([0-9.]*\).*/\1/p' "$tmp/scratch.log")
    last=$(sed -n 's/^step 50\/50 | loss \([0-9.]*\).*/\1/p' "$tmp/scratch.log")
    awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 1.0) }' || fail "from scratch: loss $first -> $last did not go down by 1 nat"
    "$gpt2" "$tmp/scratch.bin" "ROMEO:" -n 20 -s 1 -q >"$tmp/sample.txt" 2>"$tmp/err" || fail "from scratch: gpt2 cannot run it: $(cat "$tmp/err")"
    echo "from scratch: 50 steps in $(( $(date +%s) - start )) s, loss $first -> $last; sample: $(tr '\n' ' ' <"$tmp/sample.txt" | head -c 70)"
else
    echo "skipped: training from scratch on tinyshakespeare (no file given)"
fi

if [ "$failures" -ne 0 ]; then echo "test_train_cli: $failures of $checks checks failed"; exit 1; fi
echo "test_train_cli: ok, $checks checks"
