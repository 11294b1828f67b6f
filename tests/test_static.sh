#!/bin/sh
# A static gpt2 (make static, make static-aarch64): no program interpreter and no shared
# library; it tokenizes exactly as the dynamically linked gpt2 does, its --ppl agrees with
# gpt2's, and it generates (on the same architecture, exactly gpt2's greedy text).
#
#   tests/test_static.sh GPT2 MODEL.bin STATIC_GPT2 [RUNNER]
#
# GPT2 is the ordinary build, the reference. RUNNER runs STATIC_GPT2 when it is for another
# architecture (qemu-aarch64: a static binary needs no -L).
set -u
ref=$1
model=$2
bin=$3
runner=${4:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

fail() { echo "FAIL: $bin: $*"; failures=$((failures + 1)); }
run() { $runner "$bin" "$@"; }

# statically linked: no PT_INTERP, no DT_NEEDED (a static PIE has a dynamic section, but no NEEDED)
readelf -lW "$bin" >"$tmp/phdrs" 2>&1 || fail "readelf -l failed: $(head -c 200 "$tmp/phdrs")"
if grep -q 'INTERP' "$tmp/phdrs"; then fail "has a program interpreter: $(grep -A1 'INTERP' "$tmp/phdrs" | tail -n 1)"; fi
if readelf -dW "$bin" 2>/dev/null | grep -q '(NEEDED)'; then
    fail "needs shared libraries: $(readelf -dW "$bin" | grep '(NEEDED)' | tr -s ' ' | tr '\n' ' ')"
fi

# the tokenizer: integers, the same ids on every machine
head -c 300 tests/tokenizer/unicode_text.txt >"$tmp/text.txt"
"$ref" "$model" --tokenize "$tmp/text.txt" >"$tmp/ids.ref" || fail "the reference $ref failed"
run "$model" --tokenize "$tmp/text.txt" >"$tmp/ids" 2>"$tmp/err" || fail "--tokenize: exit status $?: $(head -c 300 "$tmp/err")"
cmp -s "$tmp/ids" "$tmp/ids.ref" || fail "--tokenize gives other ids than $ref"

# the forward pass: the loss on a text, to rounding (other kernels sum in another order)
want=$("$ref" "$model" --ppl "$tmp/text.txt" --ctx 32 | sed -n 's/.*: \([0-9.]*\) nats per token.*/\1/p')
got=$(run "$model" --ppl "$tmp/text.txt" --ctx 32 2>"$tmp/err" | sed -n 's/.*: \([0-9.]*\) nats per token.*/\1/p')
if [ -z "$got" ] || [ -z "$want" ]; then fail "--ppl printed no loss: $(head -c 300 "$tmp/err")"
elif ! awk -v a="$want" -v b="$got" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4 * a) }'; then
    fail "--ppl: $got nats per token, $ref says $want"
fi

# generation: greedy, from a prompt
prompt="The meaning of life is"
"$ref" "$model" "$prompt" -n 24 -t 0 -q >"$tmp/text.ref" || fail "the reference $ref failed"
run "$model" "$prompt" -n 24 -t 0 -q --threads 2 >"$tmp/text" 2>"$tmp/err" || fail "generating: exit status $?: $(head -c 300 "$tmp/err")"
case $(head -c ${#prompt} "$tmp/text") in
    "$prompt") ;;
    *) fail "generating: the output does not start with the prompt: $(head -c 200 "$tmp/text")" ;;
esac
[ "$(wc -c <"$tmp/text")" -gt $((${#prompt} + 1)) ] || fail "generating: nothing generated"
if [ -z "$runner" ] && ! cmp -s "$tmp/text" "$tmp/text.ref"; then
    fail "greedy text differs from $ref's: $(head -c 200 "$tmp/text")"
fi

if [ "$failures" -ne 0 ]; then echo "test_static: $failures failure(s) ($bin)"; exit 1; fi
size=$(wc -c <"$bin")
echo "test_static: ok ($bin${runner:+ under $runner}: statically linked, $size bytes; tokenizes as gpt2, --ppl $got as gpt2's $want, generates)"
