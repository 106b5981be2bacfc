"""Every cryptographic operation of oncofed lives in this package, behind small recipes.

Application code never imports nacl, cryptography or hmac directly (ruff bans it outside here):
it calls these functions, which choose the algorithm, bind the context and fail closed.
"""
