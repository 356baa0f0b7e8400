"""candle (the Rust example `bench`) vs sentence-transformers, same sentences, same
threads. Build the example first:

    cargo build --release -p empathy-plugin-text --example bench
    /tmp/st-venv/bin/python plugins/text/reference/bench.py [--threads 2] [--reps 10]

Alternates them for --rounds rounds and reports medians: sentences/s at batch 64 (short ~12
tokens, long ~120 tokens) and latency of a batch of one. Four runners: candle as served
(bf16 dense layers where the CPU has AMX or AVX-512 BF16), candle in f32, PyTorch in
f32 (what sentence-transformers does by default) and PyTorch under bf16 autocast (oneDNN's AMX
kernels where the CPU has them); speed-ups are against PyTorch f32.
"""

import argparse
import contextlib
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

    def run(short, long, reps, bf16=False):
        def enc(texts):
            cast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            with torch.inference_mode(), cast:
                model.encode(texts, batch_size=64, normalize_embeddings=True)

        cycle = iter(short * (reps * 6))
        return {
            "threads": torch.get_num_threads(),
            "short_per_s": len(short) / timed(reps, lambda: enc(short)),
            "long_per_s": len(long) / timed((reps + 1) // 2, lambda: enc(long)),
            "batch1_ms": 1e3 * timed(reps * 5, lambda: enc([next(cycle)])),
        }

    return run


def candle_numbers(binary, short, long, threads, reps, precision, model):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"short": short, "long": long}, f)
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), EMPATHY_TEXT_PRECISION=precision,
               EMPATHY_TEXT_MODEL=model)
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
    p.add_argument("--model", default="all-MiniLM-L6-v2", help="under <assets>/text, e.g. all-mpnet-base-v2")
    args = p.parse_args()
    assets = Path(os.environ.get("EMPATHY_ASSETS") or ROOT / "assets")
    short, long = bench_sets(64)

    torch_numbers = torch_runner(args.threads, assets / "text" / args.model)
    # Alternate the runners so that load from other processes hits them alike.
    runners = {
        "candle": lambda: candle_numbers(args.candle, short, long, args.threads, args.reps, "auto", args.model),
        "candle f32": lambda: candle_numbers(args.candle, short, long, args.threads, args.reps, "f32", args.model),
        "torch f32": lambda: torch_numbers(short, long, args.reps),
        "torch bf16": lambda: torch_numbers(short, long, args.reps, bf16=True),
    }
    runs = [{name: run() for name, run in runners.items()} for _ in range(args.rounds)]
    print(cpu())
    print(f"model {args.model}")
    import torch

    print(f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}")
    print(f"candle as served: dense layers in {runs[0]['candle']['dense']}")
    keys = [("short_per_s", "short, batch 64 (/s)", True), ("long_per_s", "long, batch 64 (/s)", True),
            ("batch1_ms", "batch 1 (ms)", False)]
    for i, r in enumerate(runs):
        print(f"round {i}: " + "; ".join(
            f"{name} " + " ".join(f"{r[name][k]:.1f}" for k, _, _ in keys) for name in runners))
    med = {name: {k: statistics.median(r[name][k] for r in runs) for k, _, _ in keys} for name in runners}
    print(f"threads {args.threads}; medians of {args.rounds} rounds x {args.reps} runs; "
          "speed-up = against torch f32 (> 1: faster)")
    print(f"{'':22}" + "".join(f"{name:>12}" for name in runners) + f"{'speed-up':>10}{'f32 only':>10}")
    for key, label, higher_is_better in keys:
        def ratio(ours):
            base = med["torch f32"][key]
            return ours / base if higher_is_better else base / ours
        cells = "".join(f"{med[name][key]:12.1f}" for name in runners)
        print(f"{label:22}{cells}{ratio(med['candle'][key]):9.2f}x{ratio(med['candle f32'][key]):9.2f}x")


if __name__ == "__main__":
    main()
