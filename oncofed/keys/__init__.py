"""Every cryptographic operation of oncofed lives in this package, behind small recipes.

Application code never imports nacl, cryptography or hmac directly (ruff bans it outside here):
it calls these functions, which choose the algorithm, bind the context and fail closed. Every
failed verification or open raises the one opaque `InvalidMessage`.

    sign(identity, tag, body) / verify(data, tag=..., signer=...)      signed envelopes (Ed25519)
    seal(payload, recipient, sender=..., context=...) / open_sealed(...)  sign-then-seal (X25519)
"""

from oncofed.keys.envelope import sign, verify, verify_from
from oncofed.keys.errors import InvalidMessage
from oncofed.keys.sealing import open_sealed, open_sealed_from, seal

__all__ = ["InvalidMessage", "open_sealed", "open_sealed_from", "seal", "sign", "verify", "verify_from"]
