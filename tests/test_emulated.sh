#!/bin/sh
# The engine's test suite on other machines, under qemu-user: 64-bit ARM (NEON kernels) and
# 32-bit ARM (armhf, a Raspberry Pi's 32-bit OS: 32-bit size_t and pointers, plain C kernels).
# Each runs the forward pass against the references and the library interface; aarch64 the
# weight types too (its NEON kernels), armhf the damaged files (its 32-bit sizes and offsets) and
# a model file too big for its address space.
#   tests/test_emulated.sh aarch64|armhf BUILD_DIR
# Skips (status 0, with a note) when the cross compiler or qemu is not installed.
set -u
arch=$1 build=$2
case $arch in
aarch64) cc=aarch64-linux-gnu-gcc flags="" run="qemu-aarch64 -L /usr/aarch64-linux-gnu" need="gcc-aarch64-linux-gnu and qemu-user" ;;
armhf) cc=arm-linux-gnueabihf-gcc flags="" run="qemu-arm -L /usr/arm-linux-gnueabihf" need="gcc-arm-linux-gnueabihf and qemu-user" ;;
*) echo "usage: tests/test_emulated.sh aarch64|armhf BUILD_DIR" >&2; exit 2 ;;
esac
qemu=${run%% *}
if ! command -v "$qemu" >/dev/null || ! command -v "$cc" >/dev/null ||
    ! echo 'int main(void){return 0;}' | $cc $flags -x c -o "$build/emulated-probe-$arch" - 2>/dev/null; then
    echo "skipped: the $arch test suite (install $need)"
    exit 0
fi
out=$build/$arch
rm -rf "$out" && mkdir -p "$out/api" "$out/bad" "$out/types"
failed=0
# damaged files on armhf only: its 32-bit sizes are what differs from the native run
tests="test_engine test_api"
[ "$arch" = aarch64 ] && tests="$tests test_types"
[ "$arch" = armhf ] && tests="$tests test_badfiles"
for t in $tests; do
    # shellcheck disable=SC2086
    $cc $flags -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror -O2 -pthread -o "$out/$t" "tests/$t.c" -lpthread -lm || exit 1
done
step() {  # NAME COMMAND...: runs it, keeps the last line (and the seconds it took)
    name=$1
    shift
    started=$(date +%s)
    if "$@" >"$out/$name.log" 2>&1; then
        echo "ok   $arch $name: $(tail -n 1 "$out/$name.log") ($(( $(date +%s) - started )) s)"
    else
        echo "FAIL $arch $name:"; grep -m 20 FAIL "$out/$name.log" || tail -n 20 "$out/$name.log"
        failed=1
    fi
}
# the forward pass with the build's kernels: on aarch64 its NEON ones (its plain C runs in
# test_types below, against the same references; armhf and the native suite run it here too)
kernels=
[ "$arch" = aarch64 ] && kernels=neon
# shellcheck disable=SC2086
step engine env ${kernels:+KERNELS=$kernels} $run "$out/test_engine" tests/fixtures/tiny "$build/tiny.bin" tests/fixtures/odd "$build/odd.bin"
# shellcheck disable=SC2086
step api $run "$out/test_api" "$build/tiny.bin" "$out/api"
# shellcheck disable=SC2086
[ "$arch" = armhf ] && step badfiles $run "$out/test_badfiles" "$build/tiny.bin" "$out/bad" tests/data/micro-v1.bin
# (the weight types' kernels are the plain C ones on armhf, which every other run tests too; on
# aarch64 qemu's CPU has the dot-product instructions, so neondot runs beside neon and plain C)
# shellcheck disable=SC2086
[ "$arch" = aarch64 ] && step types $run "$out/test_types" tests/fixtures/odd "$build/odd.bin" "$out/types"
if [ "$arch" = aarch64 ]; then
    # the README's cross-compiling command, in a copy of the sources, and its program generating on
    # a core without the dot-product instructions (neon kernels) and on one with them (neondot)
    mkdir -p "$out/cross" && cp -r Makefile ./*.c ./*.h web tools export "$out/cross/" || exit 1
    if make -s -C "$out/cross" gpt2 CC="$cc" NATIVE= >"$out/cross.log" 2>&1; then
        for cpu in cortex-a72:neon max:neondot; do
            # shellcheck disable=SC2086
            text=$(${run%% *} -cpu "${cpu%%:*}" ${run#* } "$out/cross/gpt2" models/shakespeare.bin "ROMEO:" -n 16 -s 7 2>"$out/cross-stats.log")
            if [ -n "$text" ] && grep -q "threads, ${cpu#*:} |" "$out/cross-stats.log"; then
                echo "ok   $arch cross-compiled CLI (make CC=$cc NATIVE=) on $cpu: $(echo "$text" | tr "\n" " ")"
            else
                echo "FAIL $arch cross-compiled CLI on $cpu:"; cat "$out/cross-stats.log"; failed=1
            fi
        done
    else
        echo "FAIL $arch cross-compiling:"; tail -n 5 "$out/cross.log"; failed=1
    fi
    # a build for ARMv8.2 with dot products (-march: the build's own kernels use them), its matmul
    # paths against plain C (the models went through the same kernels above, picked at run time)
    $cc -march=armv8.2-a+dotprod -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Werror -O2 -pthread -o "$out/test_types-dotprod" tests/test_types.c -lpthread -lm || exit 1
    # shellcheck disable=SC2086
    step types-dotprod $run -cpu max "$out/test_types-dotprod" "$out/types"
fi

if [ "$arch" = armhf ]; then
    # a sparse file of 5 GB whose header says so: refused by its size, with a message, no crash
    big=$out/five-gigabytes.bin
    cp "$build/tiny.bin" "$big" && truncate -s 5G "$big"
    cat >"$out/load.c" <<'EOF'
#include <stdio.h>
#include "gpt2.h"
int main(int argc, char **argv) {
    char err[GPT2_ERR_MAX];
    gpt2_model *m = gpt2_load(argv[argc - 1], err, sizeof err);
    if (m) { gpt2_free(m); puts("loaded"); return 0; }
    puts(err);
    return 1;
}
EOF
    # shellcheck disable=SC2086
    $cc $flags -std=c11 -Wall -Wextra -Werror -O2 -pthread -I. -o "$out/load" "$out/load.c" gpt2.c -lpthread -lm || exit 1
    # shellcheck disable=SC2086
    msg=$($run "$out/load" "$big")
    status=$?
    rm -f "$big"
    if [ $status -eq 1 ] && echo "$msg" | grep -q "address space"; then
        echo "ok   $arch a 5 GB model file: $msg"
    else
        echo "FAIL $arch a 5 GB model file: status $status: $msg"; failed=1
    fi
fi
[ $failed -eq 0 ] && echo "test_emulated $arch: ok"
exit $failed
