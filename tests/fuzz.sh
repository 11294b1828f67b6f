#!/bin/sh
# A timed libFuzzer run of one of the fuzz targets in tests/.
#
#   tests/fuzz.sh NAME SECONDS [LIBFUZZER OPTIONS...]     (CC: a clang with libFuzzer; default clang)
#
# Builds tests/fuzz_NAME.c with ASan and UBSan and runs it on the corpus in build/fuzz_NAME_corpus,
# which grows from run to run, seeded from tests/fuzz_NAME_seeds when that exists. Prints the number of inputs run; exits non-zero on any crash,
# leak or failed check, whose input libFuzzer saves as build/crash-*. Skips, saying so, when the
# compiler has no libFuzzer.
set -eu
name=$1 seconds=$2
shift 2
cc=${CC_FUZZ:-clang}
mkdir -p "build/fuzz_${name}_corpus"
probe='int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return d && n; }'
if ! command -v "$cc" >/dev/null || ! echo "$probe" | "$cc" -fsanitize=fuzzer -x c -o "build/fuzz_probe_$name" - 2>/dev/null; then
    echo "fuzz_$name: skipped: clang libFuzzer not available"
    exit 0
fi
# fuzz_convert #includes export/convert.c, a program linked with the engine (the others
# #include gpt2.c)
sources="tests/fuzz_$name.c"
if [ "$name" = convert ]; then sources="$sources gpt2.c"; fi
# the parsers' targets run no kernels: the engine with plain C alone (GPT2_SCALAR) builds in a
# quarter of the time; the loader's runs what it loads, with every kernel set
plain=
if [ "$name" != loader ]; then plain=-DGPT2_SCALAR; fi
"$cc" -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror -O1 -g -pthread -Ibuild $plain \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -o "build/fuzz_$name" $sources -lpthread -lm
log=build/fuzz_$name.log
seeds=
if [ -d "tests/fuzz_${name}_seeds" ]; then seeds="tests/fuzz_${name}_seeds"; fi
if "build/fuzz_$name" -max_total_time="$seconds" -max_len=4096 -artifact_prefix=build/ -print_final_stats=1 \
       "$@" "build/fuzz_${name}_corpus" $seeds >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz_$name: $runs inputs in ${seconds} s, no crash (log: $log)"
else
    tail -40 "$log"
    echo "fuzz_$name: FAILED (the input is saved as build/crash-*)"
    exit 1
fi
