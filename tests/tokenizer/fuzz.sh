#!/bin/sh
# A timed libFuzzer run of tests/fuzz_tokenizer.c: encode/decode round trips of arbitrary bytes.
#
#   tests/tokenizer/fuzz.sh SECONDS MODEL.bin [CC]     (CC: a clang with libFuzzer; default clang)
#
# Prints the number of inputs run; exits non-zero on any crash, leak or failed check, whose
# input libFuzzer saves as build/crash-*. Skips, saying so, when the compiler has no libFuzzer.
# The corpus in build/fuzz_tokenizer_corpus grows from run to run.
set -eu
seconds=$1 model=$2 cc=${3:-clang}
mkdir -p build/fuzz_tokenizer_corpus
probe='int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return d && n; }'
if ! command -v "$cc" >/dev/null || ! echo "$probe" | "$cc" -fsanitize=fuzzer -x c -o build/fuzz_probe - 2>/dev/null; then
    echo "fuzz_tokenizer: skipped: clang libFuzzer not available"
    exit 0
fi
"$cc" -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror -O1 -g -pthread \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -o build/fuzz_tokenizer tests/fuzz_tokenizer.c -lpthread -lm
if GPT2_FUZZ_MODEL=$model build/fuzz_tokenizer -max_total_time="$seconds" -max_len=4096 \
       -dict=tests/tokenizer/fuzz.dict -artifact_prefix=build/ -print_final_stats=1 \
       build/fuzz_tokenizer_corpus >build/fuzz_tokenizer.log 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' build/fuzz_tokenizer.log)
    echo "fuzz_tokenizer: $runs inputs in ${seconds} s, no crash (log: build/fuzz_tokenizer.log)"
else
    tail -40 build/fuzz_tokenizer.log
    echo "fuzz_tokenizer: FAILED (the input is saved as build/crash-*)"
    exit 1
fi
