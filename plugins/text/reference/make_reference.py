"""Writes reference embeddings: sentence-transformers (PyTorch) embeddings of varied
sentences, from the same weights directory the Rust encoder loads.

    /tmp/st-venv/bin/python plugins/text/reference/make_reference.py [MODEL_DIR [OUT]]

MODEL_DIR defaults to $EMPATHY_ASSETS/text/all-MiniLM-L6-v2, else assets/text/... in
the workspace; OUT to reference_embeddings.json here (the MiniLM file; the MPNet one is
reference_mpnet.json). Runs offline.
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from sentence_transformers import SentenceTransformer  # noqa: E402

from sentences import REFERENCE  # noqa: E402

HERE = Path(__file__).resolve().parent


def model_dir() -> Path:
    if len(sys.argv) > 1:
        return Path(sys.argv[1])
    assets = os.environ.get("EMPATHY_ASSETS") or HERE.parents[2] / "assets"
    return Path(assets) / "text" / "all-MiniLM-L6-v2"


def main() -> None:
    directory = model_dir()
    model = SentenceTransformer(str(directory), device="cpu")
    vectors = model.encode(REFERENCE, normalize_embeddings=True, batch_size=32)
    limit = model.max_seq_length
    tokens = [
        len(model.tokenizer(s, truncation=True, max_length=limit)["input_ids"])
        for s in REFERENCE
    ]
    out = {
        "model": "sentence-transformers/" + directory.name,
        "max_seq_length": model.max_seq_length,
        "generator": "sentence-transformers "
        + __import__("sentence_transformers").__version__
        + ", torch "
        + __import__("torch").__version__,
        "items": [
            {
                "text": s,
                "tokens": t,
                "embedding": [float(f"{x:.7g}") for x in v.tolist()],
            }
            for s, t, v in zip(REFERENCE, tokens, vectors)
        ],
    }
    path = HERE / (sys.argv[2] if len(sys.argv) > 2 else "reference_embeddings.json")
    path.write_text(json.dumps(out, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {len(REFERENCE)} embeddings to {path}; tokens per sentence: {tokens}")


if __name__ == "__main__":
    main()
