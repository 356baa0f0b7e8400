"""An independent reference for the GGUF tokenizers of empathy-bpe, to check ours against.

GPT-2's original byte-level BPE (openai/gpt-2 encoder.py: bytes_to_unicode, merge
ranks, the pair-merging loop), with the pre-tokenizer the GGUF names: llama.cpp's
"smollm" (every numeric character on its own (\\p{N}), then GPT-2's regex) or its
"qwen2" regex. Vocabulary and merges are read from the GGUF with the `gguf` package.
Pure Python; shares no code with the Rust `tokenizers` crate.

    pip install gguf regex
    python3 bpe_reference.py GGUF IN.txt OUT.json   # one text per line (JSON-escaped)
"""

import json
import sys

import regex
from gguf import GGUFReader


def bytes_to_unicode():
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


GPT2 = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)


QWEN2 = regex.compile(
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def pre_tokenize_smollm(text):
    pieces = []
    for part in regex.split(r"(\p{N})", text):
        if not part:
            continue
        if regex.fullmatch(r"\p{N}", part):
            pieces.append(part)
        else:
            pieces.extend(GPT2.findall(part))
    return pieces


class Reference:
    def __init__(self, path):
        r = GGUFReader(path)
        tokens = r.fields["tokenizer.ggml.tokens"].contents()
        merges = r.fields["tokenizer.ggml.merges"].contents()
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.ranks = {tuple(m.split(" ")): i for i, m in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        pre = r.fields["tokenizer.ggml.pre"].contents()
        self.pre_tokenize = {"smollm": pre_tokenize_smollm, "qwen2": QWEN2.findall}[pre]

    def bpe(self, word):
        word = list(word)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return word

    def encode(self, text):
        ids = []
        for piece in self.pre_tokenize(text):
            mapped = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.vocab[t] for t in self.bpe(mapped))
        return ids


if __name__ == "__main__":
    ref = Reference(sys.argv[1])
    with open(sys.argv[2], encoding="utf-8") as f:
        texts = [json.loads(line) for line in f if line.strip()]
    with open(sys.argv[3], "w", encoding="utf-8") as f:
        json.dump([{"text": t, "ids": ref.encode(t)} for t in texts], f, ensure_ascii=False)
