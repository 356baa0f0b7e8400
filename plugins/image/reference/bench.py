"""Image path throughput beside face-api on TF.js, alternating runs, medians and ratio.

    cargo build --release -p empathy-plugin-image --example image_bench
    (cd plugins/image/reference && npm ci --ignore-scripts)
    python3 plugins/image/reference/bench.py [ROUNDS]
"""
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

here = Path(__file__).resolve().parent
root = here.parents[2]
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
out = tempfile.mkdtemp(prefix="empathy-image-bench-")


def run(cmd, cwd):
    lines = subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout
    return json.loads([l for l in lines.splitlines() if l.startswith("{")][-1])


ours, theirs = [], []
for _ in range(rounds):
    ours.append(run([str(root / "target/release/examples/image_bench"), out, "30"], root))
    theirs.append(run(["node", "bench.cjs", out, "30", "wasm"], here))
a = statistics.median(r["images_per_s"] for r in ours)
b = statistics.median(r["images_per_s"] for r in theirs)
print(f"640x480 JPEG, one face, one image per call, median of {rounds} alternating rounds")
print(f"  {ours[0]['impl']} ({ours[0]['threads']} threads): {a:.1f} images/s (JPEG decoding included)")
print(f"  {theirs[0]['impl']}: {b:.1f} images/s (pixels given, no decoding)")
print(f"  ratio ours / TF.js: {a / b:.2f}")
