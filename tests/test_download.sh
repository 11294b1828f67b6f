#!/bin/sh
# test_download.sh — export/download.sh against build/http_server on 127.0.0.1, which serves
# tests/fixtures/tiny/model the way the hub serves openai-community/gpt2 (no network needed):
# the download must convert to a file byte-identical to build/tiny.bin; a second run must
# keep the files it has; a 404, an unknown name and a missing curl must fail clearly.
#
#     tests/test_download.sh        (after make build/http_server build/tiny.bin)
set -u

if ! command -v curl >/dev/null 2>&1; then
    echo "skipped: curl not installed (test_download.sh)"
    exit 0
fi

# The test server is local: no proxy from the environment may stand in between.
NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost
export NO_PROXY no_proxy

out=build/dl
rm -rf "$out"
mkdir -p "$out"
failures=0
problem() {
    echo "FAIL $*"
    failures=$((failures + 1))
}

build/http_server tests/fixtures/tiny/model /openai-community/gpt2/resolve/main/ >"$out/port" &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in 1 2 3 4 5 6 7 8 9 10; do
    [ -s "$out/port" ] && break
    sleep 0.5
done
port=$(cat "$out/port")
[ -n "$port" ] || { echo "FAIL the test server did not start"; exit 1; }
endpoint=http://127.0.0.1:$port

# The download and conversion.
if HF_ENDPOINT=$endpoint export/download.sh gpt2 "$out/hf" "$out/gpt2.bin" 2>"$out/stderr" &&
    cmp -s "$out/gpt2.bin" build/tiny.bin; then
    echo "ok   download.sh gpt2 from $endpoint converts to build/tiny.bin's bytes"
else
    problem "download.sh gpt2: $(cat "$out/stderr")"
fi
for file in config.json vocab.json merges.txt model.safetensors; do
    cmp -s "$out/hf/$file" "tests/fixtures/tiny/model/$file" || problem "downloaded $file differs"
    [ -e "$out/hf/$file.part" ] && problem "$file.part left behind"
done

# Again: nothing to download (a trailing slash on HF_ENDPOINT is fine too).
rm -f "$out/gpt2.bin"
if HF_ENDPOINT=$endpoint/ export/download.sh gpt2 "$out/hf" "$out/gpt2.bin" 2>"$out/stderr" &&
    [ "$(grep -c 'is already there' "$out/stderr")" -eq 4 ] && cmp -s "$out/gpt2.bin" build/tiny.bin; then
    echo "ok   a second run keeps the downloaded files"
else
    problem "second run: $(cat "$out/stderr")"
fi

# Failures: each exits non-zero, says why in its last line, and writes no model.
expect_failure() {  # DESCRIPTION PATTERN COMMAND...
    what=$1 pattern=$2
    shift 2
    "$@" >"$out/stdout" 2>"$out/stderr"
    status=$?
    if [ $status -ne 0 ] && tail -n 1 "$out/stderr" | grep -q "$pattern" && [ ! -e "$out/failed.bin" ]; then
        echo "ok   $what: $(tail -n 1 "$out/stderr")"
    else
        problem "$what: status $status, stderr: $(cat "$out/stderr")"
    fi
}
expect_failure "404" "could not download $endpoint/nowhere/openai-community/gpt2/resolve/main/config.json" \
    env HF_ENDPOINT="$endpoint/nowhere" export/download.sh gpt2 "$out/hf404" "$out/failed.bin"
[ -e "$out/hf404/config.json" ] && problem "404: config.json was created"
expect_failure "unknown model name" "unknown model 'gpt3'" export/download.sh gpt3 "$out/x" "$out/failed.bin"
expect_failure "no model name" "expected a model name" export/download.sh
# Without curl on PATH (sh and dirname are all the script needs before it looks for curl).
mkdir -p "$out/bin-without-curl"
ln -s "$(command -v dirname)" "$out/bin-without-curl/dirname"
expect_failure "curl missing" "curl is not installed" \
    env PATH="$PWD/$out/bin-without-curl" /bin/sh export/download.sh gpt2 "$out/x" "$out/failed.bin"

if [ $failures -ne 0 ]; then
    echo "test_download.sh: $failures FAILED"
    exit 1
fi
echo "test_download.sh: all passed"
