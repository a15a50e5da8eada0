"""The naive byte-level BPE trainer the benchmark compares against (not part of the package).

It is the textbook loop: split the text into GPT-2 pre-tokens, then for every merge
recount every adjacent pair in every pre-token occurrence, pick the most frequent (ties:
the lexicographically greatest pair of byte strings, the package's rule), and rewrite
every occurrence. Correct and easy to read; its cost is (number of merges) x (corpus
size), which is what the package's incremental trainer avoids.
"""

from __future__ import annotations

from collections import Counter

from course.tokenizer import EOS_TOKEN
from course.tokenizer.pretokenize import pretokenize, split_special


def naive_train(text: str, vocab_size: int, special_tokens: tuple[str, ...] = (EOS_TOKEN,)) -> list[tuple[bytes, bytes]]:
    chunks: list[list[int]] = []
    for piece, is_special in split_special(text, list(special_tokens)):
        if not is_special:
            chunks.extend(list(p.encode("utf-8")) for p in pretokenize(piece))
    vocab = {i: bytes([i]) for i in range(256)}
    merges: list[tuple[bytes, bytes]] = []
    next_id = 256
    while next_id < vocab_size - len(special_tokens):
        counts: Counter[tuple[int, int]] = Counter()
        for ids in chunks:
            counts.update(zip(ids, ids[1:], strict=False))
        if not counts:
            break
        best = max(counts, key=lambda p: (counts[p], vocab[p[0]], vocab[p[1]]))
        a, b = best
        for k, ids in enumerate(chunks):
            if len(ids) < 2:
                continue
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
                    out.append(next_id)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            chunks[k] = out
        vocab[next_id] = vocab[a] + vocab[b]
        merges.append((vocab[a], vocab[b]))
        next_id += 1
    return merges
