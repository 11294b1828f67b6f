#!/bin/sh
# docs/WALKTHROUGH.md against the code: every function it names exists, every code fragment it
# quotes is in the source, its tables of parameters, FLOPs, bytes and KV cache are what
# build/walkthrough_numbers computes (parameter counts from the engine), and, when
# ../shared/data/tinyshakespeare.txt is there, the perplexities it quotes for the shipped model
# (f32, q4_0, and with the causal mask removed as its exercise says) are what --ppl prints.
#
#   tests/test_walkthrough.sh BUILD_DIR
set -eu
build=$1
doc=docs/WALKTHROUGH.md
sources="gpt2.c gpt2_kernels.h gpt2.h tokenizer.c train_gpt2.c main.c server.c"
fails=0
fail() { echo "FAIL: $doc: $*"; fails=$((fails + 1)); }

# functions, cited as `name()`: defined at file scope (or as KERNEL(name) in gpt2_kernels.h)
names=$(grep -o '`[A-Za-z_][A-Za-z0-9_]*()`' "$doc" | tr -d '`()' | sort -u)
for name in $names; do
    grep -qE "^[A-Za-z].*[ *]$name\(|KERNEL\($name\)\(" $sources || fail "cites $name(), which no source defines"
done
n_names=$(echo "$names" | wc -w)

# quoted code and names the text relies on
for fragment in 'n_keys = a->pos0 + t + 1' 'STORE_GELU' 'ACCUMULATE' 'MATMUL_POSITIONS 64' \
                'const float scale = 1.0f / sqrtf((float)HS)'; do
    grep -qF "$fragment" $sources || fail "quotes '$fragment', which is not in the source"
done

# the computed tables, row by row
"$build/walkthrough_numbers" models/shakespeare.bin >"$build/walkthrough_numbers.out"
rows=0
while IFS= read -r row; do
    case $row in
    "KV cache: "*)
        for n in $(echo "$row" | grep -oE '[0-9][0-9,]*[0-9] bytes' | sed 's/ bytes//'); do
            grep -qF "$n bytes" "$doc" || fail "does not give the KV cache as $n bytes"
        done ;;
    *) grep -qxF "$row" "$doc" || fail "lacks the row: $row" ;;
    esac
    rows=$((rows + 1))
done <"$build/walkthrough_numbers.out"

grep -q '(docs/WALKTHROUGH.md)' README.md || fail "README does not link to it"

# the shipped model's perplexities, measured
corpus=../shared/data/tinyshakespeare.txt
measured=
if [ -f "$corpus" ]; then
    tail -c +1015582 "$corpus" >"$build/walkthrough_val.txt"
    ppl() { "$1" "$2" --ppl "$build/walkthrough_val.txt" | sed -n 's/.*perplexity \([0-9.]*\).*/\1/p'; }
    export/convert --dtype q4_0 models/shakespeare.bin "$build/walkthrough_q4_0.bin" 2>/dev/null
    # exercise 3: the engine with the causal mask removed
    mkdir -p "$build/nomask"
    sed 's/n_keys = a->pos0 + t + 1;/n_keys = a->pos0 + a->T;/' gpt2_kernels.h >"$build/nomask/gpt2_kernels.h"
    cp gpt2.c gpt2.h tokenizer.c tokenizer_unicode.h "$build/nomask/"
    ${CC:-cc} -std=c11 -O2 -pthread -I"$build" -I"$build/nomask" -o "$build/nomask/gpt2" main.c server.c "$build/nomask/gpt2.c" -lpthread -lm
    for case in "f32 ./gpt2 models/shakespeare.bin" "q4_0 ./gpt2 $build/walkthrough_q4_0.bin" \
                "no-mask $build/nomask/gpt2 models/shakespeare.bin"; do
        set -- $case
        p=$(ppl "$2" "$3")
        case $1 in no-mask) p=$(printf '%.1f' "$p") ;; esac
        grep -qF "$p" "$doc" || fail "the $1 perplexity is $p, which it does not say"
        measured="$measured $1 $p"
    done
fi

if [ "$fails" -ne 0 ]; then exit 1; fi
echo "test_walkthrough: $n_names functions cited, all defined; $rows computed rows present;${measured:+ perplexities$measured as stated}"
