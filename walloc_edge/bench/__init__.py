"""The bench: how many megapixels per second each sensor backend encodes on this machine,
next to what a sensor would use instead (JPEG, WebP, PNG); ``walloc-edge bench`` prints it.

Everything in the table is measured in the run. The runtime rows need only the sensor
runtime (give ``--bundle`` exported on a workstation); rows that need torch (the torch
encoder, decoding and PSNR) or a runtime that is not installed show as skipped, with why.

Method: one warm-up run, then ``repeat`` timed runs per row; medians with min–max, and
per-frame latency p50/p90. End to end (uint8 frame → .wlc bytes with rans, at the bench's
level) alternates, for images, with size-matched JPEG and WebP encodes round by round in the
row's process, at equal cores: a row of N threads against N JPEG (WebP) encodes at once, one
a core, so the ratios ("÷ JPEG", "÷ WebP", frames a second at equal cores) hold on a
shared machine whose load drifts between rows. Peak memory is the resident set above what
the process held just before the row, sampled every 2 ms. Inputs: the bundled astronaut
photo resized to 2048×2048 (1024×1024 with ``quick``); audio models: 10 s of generated
stereo music.

Rooms: ``machine`` (what it ran on), ``timing`` (the timing loop, the alternating JPEG
comparison, peak memory, a fresh process per measurement: the benchmark scripts use these
too), ``inputs``, one module per kind of row (``sensor_rows``, ``coder_rows``,
``torch_rows``, ``baseline_rows``), ``run`` (``run_bench``) and ``report`` (table,
Markdown, SVG).
"""
from .machine import machine
from .report import markdown, print_table, svg_plot
from .run import run_bench
from .timing import (PeakMemory, alternating_at_equal_cores, equal_cores, in_fresh_process,
                     once, timed)

__all__ = ["run_bench", "machine", "markdown", "svg_plot", "print_table", "timed", "once",
           "PeakMemory", "alternating_at_equal_cores", "equal_cores", "in_fresh_process"]
