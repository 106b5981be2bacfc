"""The node's query engine: cohort compiler, analysis catalogue, disclosure control, DP noise.

Its tables (rate limits, privacy ledger) live in oncofed.node.store.budgets and are created with
every other component's when a node opens (oncofed.node.store.migrations).
"""
