#!/bin/sh
# ThreadSanitizer over everything that runs on more than one thread: generation on 3 threads
# (the engine test), several contexts sharing one model and one pool (the API test), the server
# answering concurrent requests, streaming and not, and the trainer on 3 threads.
#   tests/test_tsan.sh BUILD_DIR MODEL.bin TEXT_FILE
# BUILD_DIR holds test_engine-tsan, test_api-tsan, gpt2-tsan and train_gpt2-tsan.
set -u
build=$1 model=$2 text=$3
out=$build/tsan
rm -rf "$out" && mkdir -p "$out"
# a race ends the program with status 66, and its report says so: each step checks both
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 allocator_may_return_null=1"
failed=0
problem() { echo "FAIL $*"; failed=1; }
clean() {  # NAME LOG STATUS
    if [ "$3" -ne 0 ] || grep -q "ThreadSanitizer" "$2"; then
        problem "$1 (status $3):"; grep -m 20 -A 12 "WARNING: ThreadSanitizer" "$2"
    else
        echo "ok   $1"
    fi
}

"$build/test_engine-tsan" tests/fixtures/tiny "$model" >"$out/engine.log" 2>&1
clean "generation on 1-3 threads, batch and token by token (test_engine)" "$out/engine.log" $?
mkdir -p "$out/api"
"$build/test_api-tsan" "$model" "$out/api" >"$out/api.log" 2>&1
clean "4 contexts in 4 threads on one model and one pool (test_api)" "$out/api.log" $?

"$build/train_gpt2-tsan" --init "$model" --data "$text" --batch 2 --seq 32 --steps 3 --eval-batches 1 --threads 3 \
    --out "$out/trained.bin" >"$out/train.log" 2>&1
clean "the trainer on 3 threads, 3 steps" "$out/train.log" $?

# the server: 8 clients at once, half of them streaming, then SIGTERM
"$build/gpt2-tsan" "$model" --serve --port 0 --threads 2 >"$out/server.out" 2>"$out/server.log" &
server=$!
port=""
for _ in $(seq 600); do
    port=$(sed -n 's|.*http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$out/server.out")
    [ -n "$port" ] && break
    sleep 0.1
done
if [ -z "$port" ]; then
    problem "the server did not start:"; cat "$out/server.out" "$out/server.log"
else
    pids=""
    for i in 1 2 3 4 5 6 7 8; do
        stream=false
        [ $((i % 2)) -eq 0 ] && stream=true
        curl -s -o "$out/reply$i" -w '%{http_code}' "http://127.0.0.1:$port/v1/completions" \
             -d "{\"prompt\": \"Hello $i\", \"max_tokens\": 12, \"stream\": $stream, \"logprobs\": 2, \"seed\": $i}" \
             >"$out/status$i" 2>&1 &
        pids="$pids $!"
    done
    # shellcheck disable=SC2086
    wait $pids
    for i in 1 2 3 4 5 6 7 8; do
        [ "$(cat "$out/status$i")" = 200 ] || problem "server request $i: status $(cat "$out/status$i")"
    done
    kill -TERM "$server"
    wait "$server"
    clean "the server: 8 concurrent requests on a shared pool, then SIGTERM" "$out/server.log" $?
fi

[ $failed -eq 0 ] && echo "test_tsan: ok (no data races)"
exit $failed
