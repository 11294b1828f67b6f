#!/bin/sh
# make install and make uninstall, and the library as a program that uses it sees it.
#
#   MAKE=make CC=cc tests/test_install.sh WORK_DIR MODEL.bin EMBED
#
# Installs twice: staged as a package build does (DESTDIR=WORK_DIR/root PREFIX=/opt/gpt2-test;
# pkg-config then finds it through PKG_CONFIG_SYSROOT_DIR) and to PREFIX=WORK_DIR/prefix. Each
# time: exactly the expected files, libgpt2.so's soname and exports (gpt2_* only), the installed
# gpt2 runs; tests/embed.c, including <gpt2.h>, built with nothing but
# `pkg-config --cflags --libs gpt2` (PKG_CONFIG_PATH = the installed lib/pkgconfig), statically
# (--static, -static) and against libgpt2.so (run with LD_LIBRARY_PATH), writes what EMBED (the
# example compiled from source) writes; then make uninstall with the same DESTDIR and PREFIX
# leaves no file. Without pkg-config, the pkg-config builds are skipped and said so.
set -u
work=$1
model=$2
embed=$3
make=${MAKE:-make}
cc=${CC:-cc}
flags="-std=c11 -Wall -Wextra -Werror -O2"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

rm -rf "$work" && mkdir -p "$work" || exit 1
work=$(cd "$work" && pwd)
"$embed" "$model" >"$work/expected" || { echo "FAIL: $embed $model failed"; exit 1; }
# a user's program: the example with the installed header, not the source tree's
sed 's|#include "../gpt2.h"|#include <gpt2.h>|' tests/embed.c >"$work/embed.c"
grep -q '#include <gpt2.h>' "$work/embed.c" || { echo "FAIL: tests/embed.c no longer includes \"../gpt2.h\""; exit 1; }
have_pkgconfig=$(command -v pkg-config >/dev/null && echo yes)

expected_files="bin/gpt2
bin/gpt2-convert
bin/train_gpt2
include/gpt2.h
lib/libgpt2.a
lib/libgpt2.so
lib/libgpt2.so.0
lib/pkgconfig/gpt2.pc"

for mode in destdir prefix; do
    if [ $mode = destdir ]; then destdir=$work/root prefix=/opt/gpt2-test sysroot=$work/root
    else destdir="" prefix=$work/prefix sysroot=""
    fi
    top=$destdir$prefix
    what="make install${destdir:+ DESTDIR=$destdir} PREFIX=$prefix"
    $make -s install ${destdir:+DESTDIR="$destdir"} PREFIX="$prefix" >"$work/install.log" 2>&1 ||
        { fail "$what: $(tail -n 5 "$work/install.log")"; continue; }

    got=$(cd "$top" && find . -type f -o -type l | sed 's|^\./||' | sort)
    [ "$got" = "$expected_files" ] || fail "$what installed: $(echo $got), expected: $(echo $expected_files)"
    [ "$(readlink "$top/lib/libgpt2.so")" = libgpt2.so.0 ] || fail "$what: lib/libgpt2.so is not a link to libgpt2.so.0"
    readelf -dW "$top/lib/libgpt2.so.0" | grep -q 'SONAME.*\[libgpt2\.so\.0\]' || fail "$what: libgpt2.so.0 has no soname libgpt2.so.0"
    others=$(nm -D --defined-only "$top/lib/libgpt2.so.0" | awk '{ print $NF }' | grep -v '^gpt2_')
    [ -z "$others" ] || fail "$what: libgpt2.so exports more than gpt2_*: $(echo $others)"
    nm -D --defined-only "$top/lib/libgpt2.so.0" | grep -q ' T gpt2_load$' || fail "$what: libgpt2.so does not export gpt2_load"
    nm --defined-only "$top/lib/libgpt2.a" | grep -q ' T gpt2_load$' || fail "$what: libgpt2.a does not define gpt2_load"
    "$top/bin/gpt2" "$model" "Hello" -n 4 -t 0 -q >/dev/null || fail "$what: the installed gpt2 does not run"
    [ -x "$top/bin/gpt2-convert" ] && [ -x "$top/bin/train_gpt2" ] || fail "$what: gpt2-convert or train_gpt2 is not executable"

    if [ -n "$have_pkgconfig" ]; then
        export PKG_CONFIG_PATH="$top/lib/pkgconfig"
        if [ -n "$sysroot" ]; then export PKG_CONFIG_SYSROOT_DIR="$sysroot"; else unset PKG_CONFIG_SYSROOT_DIR; fi
        [ "$(pkg-config --modversion gpt2)" = "$(sed -n 's/^Version: //p' "$top/lib/pkgconfig/gpt2.pc")" ] ||
            fail "$what: pkg-config does not find gpt2"
        # against the shared library
        libs=$(pkg-config --cflags --libs gpt2)
        if $cc $flags -o "$work/embed-shared" "$work/embed.c" $libs 2>"$work/cc.log"; then
            readelf -dW "$work/embed-shared" | grep -q 'NEEDED.*\[libgpt2\.so\.0\]' || fail "$what: embed-shared does not need libgpt2.so.0"
            LD_LIBRARY_PATH="$top/lib" "$work/embed-shared" "$model" >"$work/out-shared" 2>&1 &&
                cmp -s "$work/out-shared" "$work/expected" ||
                fail "$what: embed on libgpt2.so wrote other text than $embed: $(head -c 300 "$work/out-shared")"
        else fail "$what: $cc $flags embed.c $libs: $(head -c 600 "$work/cc.log")"; fi
        # statically
        libs=$(pkg-config --static --cflags --libs gpt2)
        if $cc $flags -static -o "$work/embed-static" "$work/embed.c" $libs 2>"$work/cc.log"; then
            ! readelf -dW "$work/embed-static" 2>/dev/null | grep -q '(NEEDED)' || fail "$what: embed-static needs shared libraries"
            "$work/embed-static" "$model" >"$work/out-static" 2>&1 && cmp -s "$work/out-static" "$work/expected" ||
                fail "$what: embed linked statically wrote other text than $embed: $(head -c 300 "$work/out-static")"
        else fail "$what: $cc $flags -static embed.c $libs: $(head -c 600 "$work/cc.log")"; fi
        rm -f "$work/embed-shared" "$work/embed-static"
    fi

    $make -s uninstall ${destdir:+DESTDIR="$destdir"} PREFIX="$prefix" >"$work/install.log" 2>&1 ||
        fail "make uninstall: $(tail -n 5 "$work/install.log")"
    left=$(find "$top" -type f -o -type l)
    [ -z "$left" ] || fail "make uninstall${destdir:+ DESTDIR=$destdir} PREFIX=$prefix left: $(echo $left)"
done

if [ "$failures" -ne 0 ]; then echo "test_install: $failures failure(s)"; exit 1; fi
rm -rf "$work"
if [ -n "$have_pkgconfig" ]; then
    echo "test_install: ok (make install staged and to a prefix; embed.c built with pkg-config alone, static and shared, writes what the source build does; make uninstall leaves nothing)"
else
    echo "test_install: ok (make install and uninstall); skipped: building against the installed copy (install pkg-config)"
fi
