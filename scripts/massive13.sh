#!/usr/bin/env bash
# The MASSIVE folder the real-model experiments read (experiments/e5_*.yaml): en-US with its slots
# from ../shared/data/massive/1.1/data, and the 12 locales of ../shared/data/massive/utt-only
# (ar-SA de-DE es-ES fr-FR hi-IN id-ID ja-JP ko-KR ru-RU th-TH tr-TR zh-TW: every row, intents
# only), linked, not copied, into one folder: runs/data/massive13 by default.
# With a full MASSIVE download (`xsweep data download massive`) point data.path at it instead.
#   scripts/massive13.sh [FOLDER]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
shared="${XSWEEP_SHARED_DATA:-$root/../shared/data}"
out="${1:-$root/runs/data/massive13}"
english="$shared/massive/1.1/data/en-US.jsonl"
if [ ! -f "$english" ] || ! ls "$shared"/massive/utt-only/*.jsonl.gz >/dev/null 2>&1; then
  echo "massive13: no MASSIVE slices under $shared/massive (set XSWEEP_SHARED_DATA to the shared data folder)" >&2
  exit 2
fi
mkdir -p "$out"
link() {  # a link already right is left alone, so a run beside a reader of the folder changes nothing
  [ "$(readlink "$2" 2>/dev/null)" = "$1" ] || ln -sfn "$1" "$2"
}
link "$english" "$out/en-US.jsonl"
for file in "$shared"/massive/utt-only/*.jsonl.gz; do
  link "$file" "$out/$(basename "$file")"
done
echo "$out"
