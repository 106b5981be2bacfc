"""Regenerate tests/vectors/secagg_vectors.json — known-answer vectors for secure aggregation:
the accept body, the participant set's canonical bytes and H(S), every pair's HKDF info, pair
secret and ChaCha20 key, and a 3-party masked answer whose masks cancel in the sum.

    .venv/bin/python tests/vectors/make_secagg_vectors.py

THE KEYS HERE ARE PUBLIC TEST KEYS, derived from fixed, published seeds (SHA-256 of
"oncofed public test vector seed: <centre>/mask") so anyone can reproduce the vectors; never use
them for anything but tests. Everything here is deterministic (Ed25519 signatures too), so
regenerating must not change a byte: if it does, the mask format changed — that needs a new
salt/version ("oncofed/mask/v2"), not new vectors.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from oncofed.keys.identity import Identity
from oncofed.secagg import Accept, EphemeralMaskKey, ParticipantSet, mask, pair_info, sign_accept, unmask_sum
from oncofed.secagg.masks import _keystream, _pair_key

OUT = Path(__file__).with_name("secagg_vectors.json")
CENTRES = ("test-centre-a", "test-centre-b", "test-centre-c")
QUERY_HASH = hashlib.sha256(b"oncofed public test vector: query envelope").hexdigest()
ROUND = 7
MOD = 1 << 128
# Values then flags, with the edges of Z/2^128: 0, 1, 2^127 (−2^127 in two's complement), 2^128 − 1.
VECTORS = {
    "test-centre-a": [0, 1, 42, 1 << 127, MOD - 1, 1],
    "test-centre-b": [5, MOD - 1, 0, 1 << 127, MOD - 1, 1],
    "test-centre-c": [123_456_789, 2, 7, 0, 1, 0],
}
MASK_PREVIEW = 3        # first masks of each pair's keystream, spelled out


def seed(name: str) -> bytes:
    return hashlib.sha256(f"oncofed public test vector seed: {name}".encode()).digest()


def mask_private(centre: str) -> bytes:
    return seed(f"{centre}/mask")


def identity(centre: str) -> Identity:
    return Identity("centre", centre, seed(f"{centre}/ed25519"), seed(f"{centre}/x25519"))


def main() -> None:
    keys = {c: EphemeralMaskKey.from_cleartext_private_bytes(mask_private(c)) for c in CENTRES}
    accepts = {c: Accept(QUERY_HASH, c, keys[c].public_key) for c in CENTRES}
    s = ParticipantSet(tuple(accepts[c] for c in reversed(CENTRES)))    # order given ≠ canonical
    digest = s.digest()
    pairs = []
    for i, lo in enumerate(CENTRES):
        for hi in CENTRES[i + 1:]:
            info = pair_info(query_hash=QUERY_HASH, round=ROUND, set_digest=digest, a=accepts[lo], b=accepts[hi])
            key = _pair_key(mask_private(lo), accepts[hi].mask_public_key, info)
            stream = _keystream(key, bytes(16 * MASK_PREVIEW))
            pairs.append({"lo": lo, "hi": hi, "hkdf_info": info.hex(),
                          "shared_secret_note": "X25519(lo private, hi public) = X25519(hi private, lo public)",
                          "chacha20_key": key.hex(),
                          "first_masks": [str(int.from_bytes(stream[16 * e:16 * e + 16], "little"))
                                          for e in range(MASK_PREVIEW)]})
    masked = {c: mask(VECTORS[c], key=keys[c], me=c, participants=s, query_hash=QUERY_HASH, round=ROUND)
              for c in CENTRES}
    total = unmask_sum(masked.values(), participants=s, round=ROUND)
    vectors = {
        "comment": "Known-answer vectors for oncofed secure aggregation (mask format v1). PUBLIC TEST KEYS "
                   "from fixed seeds (see make_secagg_vectors.py); never use them outside tests. "
                   "Integers are decimal strings.",
        "query_hash": QUERY_HASH,
        "round": ROUND,
        "centres": {c: {"mask_private": mask_private(c).hex(), "mask_public": keys[c].public_key.hex(),
                        "ed25519_seed": seed(f"{c}/ed25519").hex(), "x25519_secret": seed(f"{c}/x25519").hex(),
                        "accept_body": accepts[c].encode().hex(),
                        "signed_accept": sign_accept(identity(c), accepts[c]).hex(),
                        "vector": [str(v) for v in VECTORS[c]],
                        "masked": masked[c].data.hex()} for c in CENTRES},
        "participant_set": {"given_order": list(reversed(CENTRES)), "canonical": s.encode().hex(),
                            "digest": digest.hex()},
        "pairs": pairs,
        "sum": [str(v) for v in total],
    }
    OUT.write_text(json.dumps(vectors, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
