#!/bin/sh
# download.sh — fetches a GPT-2 checkpoint from the HuggingFace hub and converts it.
#
#     export/download.sh NAME [DIR [OUT.bin]]
#
# NAME is one of gpt2 (124M parameters), gpt2-medium (355M), gpt2-large (774M), gpt2-xl
# (1.5B) or distilgpt2 (82M). The four files export/convert reads (config.json, vocab.json,
# merges.txt, model.safetensors) go into DIR, default models/hf/NAME; files already there
# are kept and an interrupted download resumes. Then export/convert is built if needed and
# writes OUT.bin, default models/NAME.bin.
#
# HF_ENDPOINT (HuggingFace's own variable) names a mirror to use instead of
# https://huggingface.co; files are fetched from $HF_ENDPOINT/REPO/resolve/main/FILE.
set -eu

die() {
    echo "download.sh: $*" >&2
    exit 1
}

usage() {
    echo "usage: export/download.sh NAME [DIR [OUT.bin]]"
    echo "NAME: gpt2, gpt2-medium, gpt2-large, gpt2-xl or distilgpt2"
    echo "DIR defaults to models/hf/NAME, OUT.bin to models/NAME.bin; HF_ENDPOINT overrides https://huggingface.co"
}

case ${1:-} in
-h | --help)
    usage
    exit 0
    ;;
"") die "expected a model name (usage: export/download.sh NAME [DIR [OUT.bin]])" ;;
esac
[ $# -le 3 ] || die "too many arguments (usage: export/download.sh NAME [DIR [OUT.bin]])"

name=$1
case $name in
gpt2 | gpt2-medium | gpt2-large | gpt2-xl) repo=openai-community/$name ;;
distilgpt2) repo=distilbert/distilgpt2 ;;
*) die "unknown model '$name': choose gpt2, gpt2-medium, gpt2-large, gpt2-xl or distilgpt2" ;;
esac

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${2:-$root/models/hf/$name}
out=${3:-$root/models/$name.bin}
endpoint=${HF_ENDPOINT:-https://huggingface.co}
endpoint=${endpoint%/}

command -v curl >/dev/null 2>&1 || die "curl is not installed (on Debian or Ubuntu: apt-get install curl)"
mkdir -p "$dir" || die "cannot create $dir"

# A progress bar for people, nothing but errors for logs.
if [ -t 2 ]; then progress=--progress-bar; else progress="--silent --show-error"; fi

for file in config.json vocab.json merges.txt model.safetensors; do
    if [ -s "$dir/$file" ]; then
        echo "download.sh: $dir/$file is already there" >&2
        continue
    fi
    url=$endpoint/$repo/resolve/main/$file
    echo "download.sh: $url" >&2
    # Into FILE.part, renamed when complete: a file under its real name is always whole, and
    # --continue-at - resumes a .part left by an interrupted run. --location follows the
    # hub's redirects to its CDN; --fail turns an HTTP error into a failure.
    # shellcheck disable=SC2086
    curl --fail --location --retry 5 --retry-delay 2 --continue-at - $progress \
        --output "$dir/$file.part" "$url" ||
        die "could not download $url (curl exit status $?)"
    mv "$dir/$file.part" "$dir/$file"
done

# make rebuilds export/convert only when its sources are newer; without make, use what is there.
if command -v make >/dev/null 2>&1; then
    make -s -C "$root" export/convert >&2 || die "could not build export/convert"
elif [ ! -x "$root/export/convert" ]; then
    die "export/convert is not built and make is not installed"
fi
mkdir -p "$(dirname "$out")" || die "cannot create the directory of $out"
"$root/export/convert" "$dir" "$out" || die "converting $dir failed"
