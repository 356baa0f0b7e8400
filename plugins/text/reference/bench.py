"""candle (the Rust example `bench`) vs sentence-transformers, same sentences, same
threads. Build the example first:

    cargo build --release -p empathy-plugin-text --example bench
    /tmp/st-venv/bin/python plugins/text/reference/bench.py [--threads 2] [--reps 10]

Alternates the two for --rounds rounds and reports medians: sentences/s at batch 64 (short ~12 tokens, long ~120 tokens) and
latency of a batch of one.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from sentences import bench_sets

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def timed(reps, f):
    f()
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        f()
        out.append(time.perf_counter() - start)
    return statistics.median(out)


def torch_runner(threads, model_dir):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(model_dir), device="cpu")

    def enc(texts):
        with torch.inference_mode():
            model.encode(texts, batch_size=64, normalize_embeddings=True)

    def run(short, long, reps):
        cycle = iter(short * (reps * 6))
        return {
            "threads": torch.get_num_threads(),
            "short_per_s": len(short) / timed(reps, lambda: enc(short)),
            "long_per_s": len(long) / timed((reps + 1) // 2, lambda: enc(long)),
            "batch1_ms": 1e3 * timed(reps * 5, lambda: enc([next(cycle)])),
        }

    return run


def candle_numbers(binary, short, long, threads, reps):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"short": short, "long": long}, f)
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run(
        [binary, f.name, str(reps)], env=env, check=True, capture_output=True, text=True
    )
    os.unlink(f.name)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu():
    """The CPU model and the SIMD flags that decide which kernels run."""
    info = Path("/proc/cpuinfo").read_text()
    model = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), "?")
    flags = next((l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags")), [])
    simd = sorted(f for f in flags if f.startswith(("avx", "fma", "amx")))
    return f"cpu: {model}, {os.cpu_count()} cores; {' '.join(simd)}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--candle", default=str(ROOT / "target/release/examples/bench"))
    args = p.parse_args()
    assets = Path(os.environ.get("EMPATHY_ASSETS") or ROOT / "assets")
    short, long = bench_sets(64)

    torch_numbers = torch_runner(args.threads, assets / "text/all-MiniLM-L6-v2")
    # Alternate the two so that load from other processes hits both alike.
    runs = [
        (
            candle_numbers(args.candle, short, long, args.threads, args.reps),
            torch_numbers(short, long, args.reps),
        )
        for _ in range(args.rounds)
    ]
    print(cpu())
    import torch

    print(f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}")
    for i, (rc, rt) in enumerate(runs):
        print(
            f"round {i}: short {rc['short_per_s']:.0f} vs {rt['short_per_s']:.0f}/s, "
            f"long {rc['long_per_s']:.1f} vs {rt['long_per_s']:.1f}/s, "
            f"batch 1 {rc['batch1_ms']:.1f} vs {rt['batch1_ms']:.1f} ms (candle vs torch)"
        )
    c, t = ({k: statistics.median(r[i][k] for r in runs) for k in runs[0][i]} for i in (0, 1))
    print(
        f"threads: candle {c['threads']}, torch {t['threads']}; "
        f"medians of {args.rounds} rounds x {args.reps} runs"
    )
    # speed-up > 1 means candle is faster (rate ratio for throughput, inverse for latency)
    print(f"{'':22}{'candle':>10}{'torch':>10}{'speed-up':>10}")
    for key, label, higher_is_better in [
        ("short_per_s", "short, batch 64 (/s)", True),
        ("long_per_s", "long, batch 64 (/s)", True),
        ("batch1_ms", "batch 1 (ms)", False),
    ]:
        ratio = c[key] / t[key] if higher_is_better else t[key] / c[key]
        print(f"{label:22}{c[key]:10.1f}{t[key]:10.1f}{ratio:9.2f}x")

if __name__ == "__main__":
    main()
