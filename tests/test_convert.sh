#!/bin/sh
# test_convert.sh — runs export/convert on the checkpoints tests/make_hf_variant.c wrote and
# checks that each one comes out as its line of cases.txt says:
#
#   identical NAME [REF]  converts (stderr: the one "wrote" line) to the same bytes as REF's
#                         conversion, or as PLAIN_BIN without REF
#   valid NAME            converts
#   fail NAME             exit status 1, exactly one line on stderr ("convert: ..."), no
#                         output file and no leftover OUT.tmp
#
# Every case runs twice: with export/convert and with the sanitizer build (ASan + UBSan,
# which would add lines to stderr and change the status), and the two outputs must agree.
# Every converted file then goes through build/check_convert, which compares it value by
# value with its checkpoint. Then the command line itself: options, usage errors, and an
# existing OUT.bin left alone by a failed conversion.
#
#     tests/test_convert.sh CASES_DIR FIXTURE_DIR PLAIN_BIN
set -u

cases_dir=$1 fixture=$2 plain=$3
convert=${CONVERT:-export/convert}
convert_san=${CONVERT_SAN:-build/convert-san}
check=${CHECK_CONVERT:-build/check_convert}
out=${CONVERT_OUT:-build/convert-out/$(basename "$cases_dir")}
rm -rf "$out"
mkdir -p "$out"
failures=0

problem() {
    echo "FAIL $*"
    failures=$((failures + 1))
}

# run BINARY HF_DIR OUT: converts, leaving stderr in $out/stderr; returns convert's status.
run() {
    "$1" "$2" "$3" 2>"$out/stderr"
}

one_line_starting() {  # FILE PREFIX: the file is exactly one line and starts with PREFIX
    [ "$(wc -l <"$1")" -eq 1 ] && [ "$(head -c ${#2} "$1")" = "$2" ]
}

check_fail() {  # NAME
    for bin in "$convert" "$convert_san"; do
        target=$out/$1.bin
        rm -f "$target" "$target.tmp"
        run "$bin" "$cases_dir/$1" "$target"
        status=$?
        if [ $status -ne 1 ]; then
            problem "$1: $bin exited with $status, expected 1: $(head -c 300 "$out/stderr")"
        elif ! one_line_starting "$out/stderr" "convert: "; then
            problem "$1: $bin: stderr is not one 'convert: ' line:"
            head -n 20 "$out/stderr"
        elif [ -e "$target" ] || [ -e "$target.tmp" ]; then
            problem "$1: $bin left $target or $target.tmp behind"
        fi
    done
    echo "ok   fail      $1: $(cat "$out/stderr")"
}

check_converts() {  # NAME
    target=$out/$1.bin
    for bin in "$convert_san" "$convert"; do
        rm -f "$target"
        run "$bin" "$cases_dir/$1" "$target"
        status=$?
        if [ $status -ne 0 ]; then
            problem "$1: $bin exited with $status: $(head -c 300 "$out/stderr")"
            return 1
        fi
        if ! one_line_starting "$out/stderr" "wrote $target: "; then
            problem "$1: $bin: stderr is not the one 'wrote' line:"
            head -n 20 "$out/stderr"
            return 1
        fi
        [ "$bin" = "$convert_san" ] && mv "$target" "$target.san"
    done
    if ! cmp -s "$target" "$target.san"; then
        problem "$1: the sanitizer build wrote a different file"
        return 1
    fi
    rm -f "$target.san"
    if ! "$check" "$cases_dir/$1" "$target" >"$out/check" 2>&1; then
        problem "$1: $(cat "$out/check")"
        return 1
    fi
    return 0
}

while read -r expect name ref; do
    case $expect in
    fail)
        check_fail "$name"
        ;;
    valid)
        check_converts "$name" && echo "ok   valid     $name: $(cat "$out/check")"
        ;;
    identical)
        if [ -n "$ref" ]; then reference=$out/$ref.bin; else reference=$plain; fi
        if [ -n "$ref" ] && [ -e "$out/$name.bin" ]; then
            :  # converted and checked on its own line already
        else
            check_converts "$name" || continue
        fi
        if cmp -s "$out/$name.bin" "$reference"; then
            echo "ok   identical $name = $(basename "$reference")"
        else
            problem "$name: the conversion differs from $reference"
        fi
        ;;
    *)
        problem "cases.txt: unknown expectation '$expect'"
        ;;
    esac
done <"$cases_dir/cases.txt"

# ---- the command line ----
expect_usage_error() {  # STATUS DESCRIPTION ARGS...
    want=$1 what=$2
    shift 2
    "$convert" "$@" >"$out/stdout" 2>"$out/stderr"
    status=$?
    if [ $status -ne "$want" ] || ! one_line_starting "$out/stderr" "convert: " || [ -s "$out/stdout" ]; then
        problem "command line, $what: status $status, stderr: $(head -c 300 "$out/stderr")"
    else
        echo "ok   command line, $what: $(cat "$out/stderr")"
    fi
}
if "$convert" --help >"$out/stdout" 2>"$out/stderr" && grep -q '^usage: export/convert \[--dtype TYPE\] HF_DIR OUT.bin' "$out/stdout" &&
    [ ! -s "$out/stderr" ] && "$convert" -h >/dev/null; then
    echo "ok   command line, --help and -h"
else
    problem "command line: --help"
fi
expect_usage_error 2 "no arguments"
expect_usage_error 2 "one argument" "$fixture"
expect_usage_error 2 "three arguments" "$fixture" "$out/x.bin" extra
expect_usage_error 2 "unknown option" --bogus "$fixture" "$out/x.bin"
expect_usage_error 2 "unknown type" --dtype f8 "$fixture" "$out/x.bin"
expect_usage_error 2 "--dtype without a type" --dtype
expect_usage_error 1 "no such directory" "$out/no-such-dir" "$out/x.bin"
expect_usage_error 1 "output directory missing" "$fixture" "$out/no-such-dir/x.bin"
[ -e "$out/no-such-dir/x.bin.tmp" ] && problem "command line: a .tmp file was left behind"
if "$convert" -- "$fixture" "$out/dashes.bin" 2>/dev/null && cmp -s "$out/dashes.bin" "$plain"; then
    echo "ok   command line, -- before the arguments"
else
    problem "command line: -- before the arguments"
fi

# A failed conversion leaves an existing OUT.bin as it was.
# (st-lm-head-differs is caught last, after everything else was read.)
failing=$cases_dir/st-lm-head-differs
[ -d "$failing" ] || failing=$cases_dir/does-not-exist
printf 'previous model\n' >"$out/existing.bin"
"$convert" "$failing" "$out/existing.bin" 2>/dev/null
if [ "$(cat "$out/existing.bin")" = "previous model" ] && [ ! -e "$out/existing.bin.tmp" ]; then
    echo "ok   a failed conversion leaves an existing OUT.bin alone"
else
    problem "a failed conversion changed an existing OUT.bin"
fi

if [ $failures -ne 0 ]; then
    echo "test_convert.sh $cases_dir: $failures FAILED"
    exit 1
fi
echo "test_convert.sh $cases_dir: all passed"
