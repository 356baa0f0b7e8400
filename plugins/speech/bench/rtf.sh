#!/usr/bin/env bash
# Real-time factor of the speech plugin path beside whisper.cpp alone, same clip, same
# model file, same threads. whisper.cpp is built here from the source whisper-rs-sys
# vendors, with the flags whisper-rs-sys uses (Release, native CPU, no OpenMP).
#   plugins/speech/bench/rtf.sh [tiny.en|base] [THREADS] [RUNS]
# Needs `empathy assets fetch` (the ggml models) and scripts/setup (sox, cmake,
# pocketsphinx-testdata: the 10 s clip is LibriVox read speech).
set -euo pipefail
cd "$(dirname "$0")/../../.."
model="${1:-tiny.en}" threads="${2:-2}" runs="${3:-3}"
assets="${EMPATHY_ASSETS:-$PWD/assets}"
ggml="$assets/speech/ggml-$model.bin"
[ -f "$ggml" ] || { echo "rtf: $ggml is missing: run empathy assets fetch" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
lv=/usr/share/pocketsphinx/test/data/librivox
sox "$lv/sense_and_sensibility_01_austen_64kb-0870.wav" "$lv/sense_and_sensibility_01_austen_64kb-0880.wav" \
  -r 16000 -c 1 -b 16 "$work/clip.wav" trim 0 10

src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/whisper-rs-sys-0.15.*/whisper.cpp | tail -1)"
echo "building whisper.cpp from $src" >&2
cmake -S plugins/speech/bench -B "$work/build" -DWHISPER_SRC="$src" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF -DGGML_OPENMP=OFF -DWHISPER_BUILD_EXAMPLES=OFF -DWHISPER_BUILD_TESTS=OFF >/dev/null
cmake --build "$work/build" -j"$(nproc)" --target whisper_rtf >/dev/null
cargo build -q --release -p empathy-plugin-speech --example rtf

# Rounds alternate the three runs and keep each one's fastest time, so that other work
# on the machine (a shared 2-core box) disturbs them alike.
ours=1e9 base=1e9 full=1e9
for _ in 1 2 3; do
  read -r secs t ctx text < <(target/release/examples/rtf "$work/clip.wav" "$model" "$threads" "$runs")
  ours=$(awk -v a="$ours" -v b="$t" 'BEGIN { print (b < a ? b : a) }')
  read -r _ t _ < <("$work/build/whisper_rtf" "$ggml" "$work/clip.wav" "$threads" "$ctx" "$runs" 2>/dev/null)
  base=$(awk -v a="$base" -v b="$t" 'BEGIN { print (b < a ? b : a) }')
  read -r _ t _ < <("$work/build/whisper_rtf" "$ggml" "$work/clip.wav" "$threads" 0 "$runs" 2>/dev/null)
  full=$(awk -v a="$full" -v b="$t" 'BEGIN { print (b < a ? b : a) }')
done
awk -v s="$secs" -v o="$ours" -v b="$base" -v f="$full" -v c="$ctx" -v m="$model" -v t="$threads" 'BEGIN {
  printf "model %s, %.1f s clip, %d threads, fastest of 3 rounds\n", m, s, t
  printf "  speech plugin (decode + Whisper audio_ctx=%d + prosody): RTF %.3f\n", c, o / s
  printf "  whisper.cpp alone, same audio_ctx=%d:                   RTF %.3f   ratio ours/whisper.cpp %.2f\n", c, b / s, o / b
  printf "  whisper.cpp alone, full 30 s window (its default):      RTF %.3f\n", f / s
}'
echo "  transcript: $text"
