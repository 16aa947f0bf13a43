"""Tools that stand on the whole package rather than inside it: the per-device bench
(``bench``; its measuring helpers ``timed``, ``PeakMemory``, ``alternating_with_jpeg`` and
``machine`` are public for the benchmark scripts) and the demo (``demo``)."""
