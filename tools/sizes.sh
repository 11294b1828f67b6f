#!/bin/sh
# Memory and time for every GPT-2 size and weight type: writes models with each size's shapes
# (random weights; GPT-2's vocabulary from TOKENIZER_FROM.bin) in every type, then for each
# prints one Markdown row: file size, load time, peak memory of a generation (the weights a
# token reads, the KV cache and scratch), and decoding speed on 1 thread and on all cores
# (greedy, 64 tokens after a one-token prompt, the best of 2 runs after a warm-up).
#
#   tools/sizes.sh DIR TOKENIZER_FROM.bin [SIZE...]     (SIZE: 124M 355M 774M 1.5B; default all)
#
# DIR receives the models (1.2 GB for 124M in every type, 16 GB for 1.5B); run it on an
# otherwise idle machine.
set -eu
dir=$1 tokenizer=$2
shift 2
sizes=${*:-124M 355M 774M 1.5B}
mkdir -p "$dir"
make -s gpt2 export/convert build/random_model
cores=$(nproc)

shape() {
    case $1 in
    124M) echo "12 12 768" ;;
    355M) echo "24 16 1024" ;;
    774M) echo "36 20 1280" ;;
    1.5B) echo "48 25 1600" ;;
    *) echo "unknown size $1" >&2; exit 1 ;;
    esac
}

# decode tokens/s and load ms from the CLI's stats line; peak RSS (MB) from the kernel
run() {  # MODEL THREADS → "load_ms tps rss_mb"
    /usr/bin/time -f "rss %M" ./gpt2 "$1" --ids 464 -n 64 -t 0 --ignore-eot --threads "$2" 2>&1 >/dev/null |
        awk '/^load/ { load = $2; for (i = 1; i <= NF; i++) if ($i == "generated") tps = $(i + 3) }
             /^rss/  { rss = $2 / 1024 }
             END     { printf "%s %s %.0f\n", load, tps, rss }'
}
best() {  # MODEL THREADS → the run with the highest tokens/s of 2
    a=$(run "$1" "$2"); b=$(run "$1" "$2")
    echo "$a
$b" | sort -k2 -g | tail -n 1
}

echo "| model | type | file | load | peak memory | decode, 1 thread | decode, $cores threads |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for size in $sizes; do
    f32=$dir/gpt2-$size-f32.bin
    # shellcheck disable=SC2046
    [ -f "$f32" ] || build/random_model "$f32" "$tokenizer" $(shape "$size") 1024 >/dev/null
    for type in f32 f16 bf16 q8_0 q4_0; do
        model=$dir/gpt2-$size-$type.bin
        [ -f "$model" ] || export/convert --dtype "$type" "$f32" "$model" >/dev/null 2>&1
        run "$model" "$cores" >/dev/null  # warm-up: the file into the page cache
        set -- $(best "$model" 1)
        one=$2
        set -- $(best "$model" "$cores")
        mb=$(($(wc -c <"$model") / 1000000))
        echo "| $size | $type | $mb MB | $1 ms | $3 MB | $one tok/s | $2 tok/s |"
    done
done
