#!/bin/sh
# The command line's `--tokenize` against js-tiktoken's ids, on every "special" case of cases.txt
# and every third other one (test_tokenizer checks every case through the library; this checks
# the command line's reading of the file and its printing of ids, at a process a case).
#
#   tests/tokenizer/cli_test.sh GPT2 MODEL.bin TEST_TOKENIZER CASES.txt WORKDIR
#
# TEST_TOKENIZER --split writes each case's exact bytes to WORKDIR/N.txt, its ids to N.ids
# and its mode to N.mode; "special" cases run with --allow-special.
set -eu
gpt2=$1 model=$2 splitter=$3 cases=$4 dir=$5
rm -rf "$dir"
mkdir -p "$dir"
"$splitter" --split "$cases" "$dir" >/dev/null
passed=0 failed=0 n=0
for text in "$dir"/*.txt; do
    case=${text%.txt}
    read -r mode < "$case.mode"
    n=$((n + 1))
    [ "$mode" = special ] || [ $((n % 3)) -eq 0 ] || continue
    flag=
    [ "$mode" = special ] && flag=--allow-special
    if "$gpt2" "$model" --tokenize "$text" $flag > "$case.out" 2>&1 && cmp -s "$case.out" "$case.ids"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        [ "$failed" -le 10 ] && echo "FAIL $gpt2 $model --tokenize $text $flag: see $case.out, expected $case.ids"
    fi
done
echo "cli --tokenize: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
