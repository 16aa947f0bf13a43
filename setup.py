"""The optional C extension of the rans coder; everything else is in pyproject.toml.

Optional: where no C compiler is found the build warns and goes on, and the runtime uses
the numpy coder (the same bytes, slower; `walloc-edge info` says which runs)."""
from setuptools import Extension, setup

setup(ext_modules=[Extension("walloc_edge.runtime.coders.rans._native",
                             ["walloc_edge/runtime/coders/rans/_native.c"],
                             extra_compile_args=["-O3", "-std=c99"], optional=True)])
