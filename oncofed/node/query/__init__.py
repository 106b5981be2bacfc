"""The node's query engine: cohort compiler, analysis catalogue, disclosure control, budgets.

Importing this package registers the "query" store migrations (rate limits, privacy ledger), so
import it before `open_node` when you answer queries: `open_node` migrates every registered
component.
"""

from oncofed.node.query import budget as _budget  # noqa: F401  (registers the "query" migrations)
