"""Secure aggregation (floor 2): the pairwise masks and participant sets that node and researcher's
client both need (DESIGN §4). Reserved: the federation issue fills it; masks are expanded with
`cryptography`'s HKDF and ChaCha20 here and only here (beside oncofed.keys).
"""
