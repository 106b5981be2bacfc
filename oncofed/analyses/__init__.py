"""The analyses (floor 2): one module each, written once for every driver.

    from oncofed.analyses import parse_analysis, finalise, render
    spec = parse_analysis(body.analysis, dictionary)       # the vector's layout
    result = finalise(spec, summed_vector)                 # the researcher's statistic

Each module (count, crosstab, summary, histogram, kaplan_meier, logrank) defines its spec (the
vector layout), its node-side local step over a `Reader`, its disclosure step and its finaliser;
`catalogue` maps the proto `Analysis` oneof to them. See oncofed.analyses.base for the shape.
"""

from oncofed.analyses.base import Analysis, Block, Grants, Reader, Release, Result, Rules
from oncofed.analyses.catalogue import (
    CATALOGUE,
    KINDS,
    analysis,
    finalise,
    finalise_query,
    parse_analysis,
    render,
    table,
)
from oncofed.analyses.disclosure import release

__all__ = ["CATALOGUE", "KINDS", "Analysis", "Block", "Grants", "Reader", "Release", "Result", "Rules", "analysis",
           "finalise", "finalise_query", "parse_analysis", "release", "render", "table"]
