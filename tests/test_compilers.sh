#!/bin/sh
# The code built by gcc and by clang, at -O2 and at -O3, warnings as errors, and tested in the
# builds nothing else tests: the programs (gpt2, train_gpt2, export/convert) through the command
# line's, the server's, the trainer's command line's and the converter's suites; the test
# programs (the forward pass against the references with every kernel set, every weight type,
# the sampler, the library's interface, the trainer against nanoGPT, the tokenizer against
# tiktoken). `make` and `make test` already build and test the programs and the test programs
# with gcc -O3. This builds the programs with gcc -O2 and everything with clang at -O2 (the
# programs) and -O3, and runs everything clang -O3 built: -O2 adds warnings of its own (in the
# engine and programs, built here by both compilers) but little a run at -O3 does not find;
# running it too doubled this test's time, and test programs at -O2 were 6 more builds of the
# engine each. A compiler that is not installed is skipped.
#
#   tests/test_compilers.sh BUILD_DIR "TARGET_FLAGS" REFERENCES...
# BUILD_DIR holds bad/ (test-badfiles), test_server, make_hf_variant and check_convert.
# TARGET_FLAGS: what the other builds add for the CPU (e.g. -march=native).
set -eu
build=$1 target=$2
shift 2
references="$*"
tiny=$(echo "$references" | awk '{print $2}')
warn="-std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror"
tests="test_engine test_types test_sampling test_api test_tokenizer test_train"
jobs=$(nproc 2>/dev/null || echo 1)
status=0
done_configs=""
# the converter's cases (test-convert's, written apart: that test rewrites its own as it starts)
rm -rf "$build/compilers" && mkdir -p "$build/compilers"
"$build/make_hf_variant" tests/fixtures/tiny/model "$build/compilers/hf" >/dev/null

# NAME COMMAND...: runs one test of the build in $dir, printing its last line, or its log's end on failure
run() {
    name=$1
    shift
    if "$@" >"$dir/$name.log" 2>&1; then
        echo "  $cc $opt $name: $(tail -n 1 "$dir/$name.log")"
    else
        echo "FAIL: $cc $opt $name:"; tail -20 "$dir/$name.log"
        status=1
    fi
}

for cc in gcc clang; do
    if ! command -v "$cc" >/dev/null; then
        echo "test_compilers: $cc skipped (not installed)"
        continue
    fi
    for opt in -O2 -O3; do
        [ "$cc $opt" = "gcc -O3" ] && continue  # `make` and `make test` build everything so
        full=yes                                # -O3: the test programs too, and everything run
        [ "$opt" = -O2 ] && full=no             # -O2: the programs, built warning-free, not run
        dir=$build/compilers/$cc$opt
        rm -rf "$dir" && mkdir -p "$dir/types" "$dir/api" "$dir/train" "$dir/server"
        flags="$warn $opt $target -pthread"
        # one line per compilation, run $jobs at a time
        {
            for src in main.c server.c gpt2.c train_gpt2.c export/convert.c; do
                echo "$cc $flags -I$build -c -o $dir/$(basename "$src" .c).o $src"
            done
            if [ $full = yes ]; then
                for t in $tests; do
                    plain=  # (as make test builds them: the tokenizer's and the sampler's tests run no kernels)
                    case $t in test_tokenizer | test_sampling) plain=-DGPT2_SCALAR ;; esac
                    echo "$cc $flags $plain -g -o $dir/$t tests/$t.c -lpthread -lm"
                done
            fi
        } >"$dir/commands"
        if ! xargs -P "$jobs" -I{} sh -c '{} 2>>'"$dir/build.log" <"$dir/commands" ||
           ! { $cc -pthread -o "$dir/gpt2" "$dir/main.o" "$dir/server.o" "$dir/gpt2.o" -lpthread -lm &&
               $cc -pthread -o "$dir/train_gpt2" "$dir/train_gpt2.o" -lpthread -lm &&
               $cc -pthread -o "$dir/convert" "$dir/convert.o" "$dir/gpt2.o" -lpthread -lm; } 2>>"$dir/build.log"; then
            echo "FAIL: $cc $opt does not build:"; head -30 "$dir/build.log"
            status=1
            continue
        fi
        if [ $full = no ]; then
            done_configs="$done_configs built $cc $opt;"
            continue
        fi
        run test_cli tests/test_cli.sh "$dir/gpt2" "$tiny" "$build/bad"
        run test_server "$build/test_server" "$dir/gpt2" "$tiny" "$dir/server"
        run test_train_cli tests/test_train_cli.sh "$dir/train_gpt2" "$dir/gpt2" "$tiny" "$build/bad/magic.bin"
        cp "$dir/convert" "$dir/convert-again"  # the script runs each case with two binaries and compares
        run test_convert env CONVERT="$dir/convert" CONVERT_SAN="$dir/convert-again" CHECK_CONVERT="$build/check_convert" \
            CONVERT_OUT="$dir/convert-out" tests/test_convert.sh "$build/compilers/hf" tests/fixtures/tiny/model "$tiny"
        # shellcheck disable=SC2086
        run test_engine "$dir/test_engine" $references
        # shellcheck disable=SC2086
        run test_types "$dir/test_types" $references "$dir/types"
        run test_sampling "$dir/test_sampling" "$tiny"
        run test_api "$dir/test_api" "$tiny" "$dir/api"
        run test_tokenizer "$dir/test_tokenizer" "$tiny" tests/tokenizer/cases.txt
        run test_train "$dir/test_train" tests/fixtures/tiny/train "$tiny" "$dir/train" tests/tokenizer/unicode_text.txt
        done_configs="$done_configs programs and tests $cc $opt;"
    done
done
[ "$status" -eq 0 ] || exit 1
echo "test_compilers: warning-free (and passing where run):$done_configs"
