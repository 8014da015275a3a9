"""Looking inside a model without training it: the layer-by-layer dry run, parameters and FLOPs."""

from .summary import Stage, Summary, summarize

__all__ = ["Stage", "Summary", "summarize"]
