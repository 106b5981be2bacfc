"""Cost of secure aggregation: one centre masking its answer (`oncofed.secagg.mask`: |S| − 1 pair
keys, each X25519 + HKDF + a ChaCha20 keystream of 16 bytes per value, summed in 32-bit lanes),
and the researcher's client summing |S| masked answers (`unmask_sum`), for 3, 10 and 100 parties
× 100, 10^4 and 10^5 values. Key generation and S are made outside the timed region (a node
makes its key at prepare time). Each figure is the median of repeated runs; the parts are timed
alone too (pair derivation, keystream alone), and one pure-Python-integer accumulation is timed
for comparison. Printed and written as JSON.

    python bench/secagg.py --out bench/results/secagg.json [--parties 3,10,100] [--values 100,10000,100000]

Compare: shared FACTS recorded 0.7 ms for 10 parties × 100 values and 26 ms for 100 × 10^5.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path

from oncofed.secagg import Accept, EphemeralMaskKey, MaskedVector, ParticipantSet, mask, pair_info, unmask_sum
from oncofed.secagg.masks import _keystream, _pair_key

FACTS_MS = {(10, 100): 0.7, (100, 100_000): 26.0}
Q = hashlib.sha256(b"bench query").hexdigest()
BUDGET_S = 1.5          # per measurement: repeat until this much time is spent (at least 3 runs)


def timed(fn, setup=lambda: None, min_runs=3, max_runs=200):
    runs = []
    while len(runs) < min_runs or (sum(runs) < BUDGET_S and len(runs) < max_runs):
        arg = setup()
        t = time.perf_counter()
        fn(arg)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs) * 1000, len(runs)


def case(parties, n, rnd):
    ids = [f"centre-{i:03d}" for i in range(parties)]
    others = {c: EphemeralMaskKey.generate().public_key for c in ids[1:]}
    vector = [rnd.randrange(1 << 20) for _ in range(n)]
    me = ids[parties // 2]            # adds to some pairs, subtracts from others

    def fresh():
        key = EphemeralMaskKey.generate()
        pubs = {**others, me: key.public_key} if me != ids[0] else others
        pubs.setdefault(ids[0], EphemeralMaskKey.generate().public_key)
        s = ParticipantSet(tuple(Accept(Q, c, pubs[c]) for c in ids))
        return key, s

    mask_ms, runs = timed(lambda ks: mask(vector, key=ks[0], me=me, participants=ks[1], query_hash=Q, round=0),
                          fresh)
    key, s = fresh()
    mine, other = s.accept_of(me), next(a for a in s if a.centre_id != me)
    private = key.cleartext_private_bytes()
    digest = s.digest()
    info = pair_info(query_hash=Q, round=0, set_digest=digest, a=mine, b=other)
    derive_ms, _ = timed(lambda _: [_pair_key(private, other.mask_public_key, info) for _ in range(100)])
    zeros = bytes(16 * n)
    stream_ms, _ = timed(lambda _: _keystream(bytes(32), zeros))
    answers = [MaskedVector(c, Q, 0, digest, os.urandom(16 * n)) for c in s.centre_ids]
    sum_ms, _ = timed(lambda _: unmask_sum(answers, participants=s, round=0))
    row = {"parties": parties, "values": n, "mask_ms": round(mask_ms, 3), "mask_runs": runs,
           "per_pair_ms": round(mask_ms / (parties - 1), 4),
           "pair_key_derivation_ms": round(derive_ms / 100, 4),
           "keystream_alone_ms_per_pair": round(stream_ms, 4),
           "keystream_share": round(stream_ms * (parties - 1) / mask_ms, 2),
           "unmask_sum_ms": round(sum_ms, 3),
           "keystream_bytes": 16 * n * (parties - 1)}
    if (parties, n) in FACTS_MS:
        row["facts_ms"] = FACTS_MS[(parties, n)]
        row["ratio_to_facts"] = round(mask_ms / FACTS_MS[(parties, n)], 1)
    return row


def python_int_baseline(n=10_000, pairs=9):
    """The same accumulation with Python integers, element by element, for comparison."""
    streams = [_keystream(hashlib.sha256(bytes([i])).digest(), bytes(16 * n)) for i in range(pairs)]
    mod = 1 << 128

    def run(_):
        acc = [0] * n
        for i, s in enumerate(streams):
            sign = 1 if i % 2 else -1
            acc = [(a + sign * int.from_bytes(s[16 * e:16 * e + 16], "little")) % mod for e, a in enumerate(acc)]
        return acc

    ms, _ = timed(run)
    return {"values": n, "pairs": pairs, "python_int_accumulate_ms": round(ms, 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path)
    ap.add_argument("--parties", default="3,10,100")
    ap.add_argument("--values", default="100,10000,100000")
    args = ap.parse_args()
    rnd = random.Random(1)
    rows = []
    for parties in (int(p) for p in args.parties.split(",")):
        for n in (int(v) for v in args.values.split(",")):
            row = case(parties, n, rnd)
            rows.append(row)
            extra = f"  (FACTS {row['facts_ms']} ms: ×{row['ratio_to_facts']})" if "facts_ms" in row else ""
            print(f"{parties:>4} parties × {n:>7} values: mask {row['mask_ms']:>9.3f} ms "
                  f"({row['per_pair_ms']:.4f} ms/pair, keystream {row['keystream_share']:.0%}), "
                  f"unmask_sum {row['unmask_sum_ms']:>8.3f} ms{extra}", flush=True)
    base = python_int_baseline()
    lanes = next((r for r in rows if r["parties"] == 10 and r["values"] == 10_000), None)
    if lanes:
        base["lanes_mask_ms_same_size"] = lanes["mask_ms"]
    print(f"pure-Python integers, 9 pairs × 10^4 values: {base['python_int_accumulate_ms']} ms "
          f"(lanes, whole mask call: {base.get('lanes_mask_ms_same_size')} ms)")
    result = {"benchmark": "secagg", "python": platform.python_version(), "machine": platform.machine(),
              "cpus": os.cpu_count(), "load_average": os.getloadavg(), "cases": rows, "baseline": base}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
