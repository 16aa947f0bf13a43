"""Tools that stand on the whole package rather than inside it: the demo (``demo``). The
bench has its own package, ``walloc_edge.bench``."""
