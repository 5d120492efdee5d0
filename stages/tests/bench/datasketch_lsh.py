"""Runs datasketch's MinHashLSH on the corpus `tests/bench.rs` wrote and compares its pairs with ours.

Usage: python datasketch_lsh.py DIR   (DIR holds corpus.txt, pairs_rust.txt, rust_seconds.txt)
Shingles are the same: 5-word windows over lowercase alphanumeric words; 128 permutations, threshold 0.8.
"""
import re
import sys
import time

from datasketch import MinHash, MinHashLSH

PERMS, SHINGLE, THRESHOLD = 128, 5, 0.8


def shingles(text):
    w = re.findall(r"\w+", text.lower())
    k = min(SHINGLE, len(w))
    return {" ".join(w[i:i + k]).encode() for i in range(len(w) - k + 1)}


def main(d):
    docs = open(f"{d}/corpus.txt").read().splitlines()
    sets = [shingles(t) for t in docs]
    t0 = time.perf_counter()
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=PERMS)
    pairs = set()
    for i, s in enumerate(sets):
        m = MinHash(num_perm=PERMS)
        m.update_batch(list(s))
        for k in lsh.query(m):
            pairs.add((k, i))
        lsh.insert(i, m)
    secs = time.perf_counter() - t0
    ours = {tuple(map(int, l.split())) for l in open(f"{d}/pairs_rust.txt")}
    rust_secs = float(open(f"{d}/rust_seconds.txt").read())
    jac = lambda a, b: len(sets[a] & sets[b]) / max(1, len(sets[a] | sets[b]))
    true_ds = {p for p in pairs if jac(*p) >= THRESHOLD}
    print(f"datasketch: {len(docs)} docs in {secs:.2f}s ({len(docs) / secs:.0f} docs/s), {len(pairs)} pairs "
          f"({len(true_ds)} with true Jaccard >= {THRESHOLD})")
    print(f"medalign: {rust_secs:.3f}s, {len(ours)} pairs; speedup {secs / rust_secs:.1f}x")
    print(f"recall of datasketch's pairs: {len(pairs & ours) / max(1, len(pairs)):.4f}; "
          f"of those with true Jaccard >= {THRESHOLD}: {len(true_ds & ours) / max(1, len(true_ds)):.4f}")


if __name__ == "__main__":
    main(sys.argv[1])
