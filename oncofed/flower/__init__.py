"""Flower driver of the federated models (floor 4; docs/flower.md, D25).

- `clientapp` — the ClientApp a centre's SuperNode runs: it finds its node directory in the
  SuperNode's node config and answers through the node's one pipeline (oncofed.node.federated);
- `serverapp` — the ServerApp: the coordinator of one model fit (prepare, participant set, one
  round per Newton step, each round's masked answers verified and summed);
- `request` — the researcher's side: the signed run config, and the result file read back;
- `simulation` — both apps on Flower's simulation engine over local node directories;
- `deploy` — the deployment around them (SuperLink, SuperNodes; docs/flower-operations.md).

This package imports nothing of itself here, so that the ClientApp — a fresh process per message
on the deployment engine — loads only what it needs.
"""
