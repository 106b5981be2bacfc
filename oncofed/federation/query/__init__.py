"""The query contract on the researcher's side: text form, analysis catalogue and errors.

    from oncofed.federation.query import loads, parse_analysis, QueryError
    body = loads(open("q.json").read(), dictionary=dictionary.load())
"""

from oncofed.federation.query.errors import QueryError
from oncofed.federation.query.spec import AnalysisSpec, n_total, parse_analysis
from oncofed.federation.query.textform import from_mapping, loads, to_mapping

__all__ = ["AnalysisSpec", "QueryError", "from_mapping", "loads", "n_total", "parse_analysis", "to_mapping"]
