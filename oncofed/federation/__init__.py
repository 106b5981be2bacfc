"""The federation (floor 3): the hub (`federation.hub`) and the researcher's client
(`federation.client`). Neither ever imports `oncofed.node`: what they share with a centre is the
query contract (oncofed.query), the analyses (oncofed.analyses) and secure aggregation
(oncofed.secagg).
"""
