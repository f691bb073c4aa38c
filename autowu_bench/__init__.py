"""autowu-bench: does automated LR warmup (AutoWU) match a grid-searched linear warmup on my workload?"""

__version__ = "0.1.0"
