#!/bin/sh
# The code built by gcc and by clang, at -O2 and at -O3, warnings as errors: every program
# (gpt2, train_gpt2, export/convert) compiles, and the engine's test programs, built the same
# way, pass — the forward pass against the references with every kernel set, every weight type,
# the sampler, the library's interface, the tokenizer. A compiler that is not installed is
# skipped with a note.
#
#   tests/test_compilers.sh BUILD_DIR "CFLAGS" REFERENCES...
# CFLAGS: the target flags the other builds use (e.g. -march=native), added to each build.
set -eu
build=$1 target=$2
shift 2
references="$*"
warn="-std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror"
tiny=$(echo "$references" | awk '{print $2}')
status=0
summary=""
for cc in gcc clang; do
    if ! command -v "$cc" >/dev/null; then
        summary="$summary $cc: skipped (not installed);"
        continue
    fi
    for opt in -O2 -O3; do
        dir=$build/compilers/$cc$opt
        rm -rf "$dir" && mkdir -p "$dir/types" "$dir/api"
        flags="$warn $opt $target -pthread"
        log=$dir/build.log
        # the programs: compiled (not linked) with every warning an error; the tests: built and run
        if ! { $cc $flags -I"$build" -c -o "$dir/main.o" main.c &&
               $cc $flags -I"$build" -c -o "$dir/server.o" server.c &&
               $cc $flags -c -o "$dir/gpt2.o" gpt2.c &&
               $cc $flags -c -o "$dir/train_gpt2.o" train_gpt2.c &&
               $cc $flags -c -o "$dir/convert.o" export/convert.c &&
               for t in test_engine test_types test_sampling test_api test_tokenizer; do
                   $cc $flags -g -o "$dir/$t" "tests/$t.c" -lpthread -lm || exit 1
               done; } >"$log" 2>&1; then
            echo "FAIL: $cc $opt does not build:"; head -30 "$log"
            status=1
            continue
        fi
        run() {  # NAME COMMAND...: the test's last line, or its log on failure
            name=$1
            shift
            if "$@" >"$dir/$name.log" 2>&1; then
                echo "  $cc $opt $name: $(tail -n 1 "$dir/$name.log")"
            else
                echo "FAIL: $cc $opt $name:"; tail -20 "$dir/$name.log"
                status=1
            fi
        }
        # shellcheck disable=SC2086
        run test_engine "$dir/test_engine" $references
        # shellcheck disable=SC2086
        run test_types "$dir/test_types" $references "$dir/types"
        run test_sampling "$dir/test_sampling" "$tiny"
        run test_api "$dir/test_api" "$tiny" "$dir/api"
        run test_tokenizer "$dir/test_tokenizer" "$tiny" tests/tokenizer/cases.txt
        summary="$summary $cc $opt;"
    done
done
[ "$status" -eq 0 ] || exit 1
echo "test_compilers: built warning-free and passed with$summary"
