#!/bin/sh
# The code built by gcc and by clang, at -O2 and at -O3, warnings as errors: every program
# (gpt2, train_gpt2, export/convert) compiles, and the engine's and the tokenizer's test
# programs, built the same way, pass — the forward pass against the references with every
# kernel set, every weight type, the sampler, the library's interface, the tokenizer against
# tiktoken. `make` and `make test` already build the programs with gcc -O3 and the tests with
# gcc -O2; this adds the other six builds. A compiler that is not installed is skipped.
#
#   tests/test_compilers.sh BUILD_DIR "TARGET_FLAGS" REFERENCES...
# TARGET_FLAGS: what the other builds add for the CPU (e.g. -march=native).
set -eu
build=$1 target=$2
shift 2
references="$*"
tiny=$(echo "$references" | awk '{print $2}')
warn="-std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror"
tests="test_engine test_types test_sampling test_api test_tokenizer"
jobs=$(nproc 2>/dev/null || echo 1)
status=0
done_configs=""

for cc in gcc clang; do
    if ! command -v "$cc" >/dev/null; then
        echo "test_compilers: $cc skipped (not installed)"
        continue
    fi
    for opt in -O2 -O3; do
        programs=yes run_tests=yes
        [ "$cc $opt" = "gcc -O3" ] && programs=no    # `make` builds them so
        [ "$cc $opt" = "gcc -O2" ] && run_tests=no   # `make test` builds them so
        dir=$build/compilers/$cc$opt
        rm -rf "$dir" && mkdir -p "$dir/types" "$dir/api"
        flags="$warn $opt $target -pthread"
        # one line per compilation, run $jobs at a time
        {
            if [ $programs = yes ]; then
                for src in main.c server.c gpt2.c train_gpt2.c export/convert.c; do
                    echo "$cc $flags -I$build -c -o $dir/$(basename "$src" .c).o $src"
                done
            fi
            if [ $run_tests = yes ]; then
                for t in $tests; do echo "$cc $flags -g -o $dir/$t tests/$t.c -lpthread -lm"; done
            fi
        } >"$dir/commands"
        if ! xargs -P "$jobs" -I{} sh -c '{} 2>>'"$dir/build.log" <"$dir/commands"; then
            echo "FAIL: $cc $opt does not build:"; head -30 "$dir/build.log"
            status=1
            continue
        fi
        [ $programs = yes ] && done_configs="$done_configs programs $cc $opt;"
        [ $run_tests = yes ] || continue
        run() {  # NAME ARGS...: prints the test's last line, or its log's end on failure
            name=$1
            shift
            if "$dir/$name" "$@" >"$dir/$name.log" 2>&1; then
                echo "  $cc $opt $name: $(tail -n 1 "$dir/$name.log")"
            else
                echo "FAIL: $cc $opt $name:"; tail -20 "$dir/$name.log"
                status=1
            fi
        }
        # shellcheck disable=SC2086
        run test_engine $references
        # shellcheck disable=SC2086
        run test_types $references "$dir/types"
        run test_sampling "$tiny"
        run test_api "$tiny" "$dir/api"
        run test_tokenizer "$tiny" tests/tokenizer/cases.txt
        done_configs="$done_configs tests $cc $opt;"
    done
done
[ "$status" -eq 0 ] || exit 1
echo "test_compilers: warning-free and passing:$done_configs"
