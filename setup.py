"""The optional C extensions (the rans coder's loops, the native encoder); everything else is
in pyproject.toml.

Optional: where no C compiler is found the build warns and goes on, and the runtime uses
the numpy coder and another backend (the same bytes, slower; `walloc-edge info` says which runs)."""
from setuptools import Extension, setup

C99 = ["-O3", "-std=c99"]
setup(ext_modules=[
    Extension("walloc_edge.runtime.coders.rans._native",
              ["walloc_edge/runtime/coders/rans/_native.c"],
              depends=["walloc_edge/runtime/native_parallel.h"],
              extra_compile_args=C99 + ["-pthread"], extra_link_args=["-pthread"],
              optional=True),
    Extension("walloc_edge.runtime._native_encoder",
              ["walloc_edge/runtime/_native_encoder.c", "walloc_edge/runtime/native_encoder.c",
               "walloc_edge/runtime/native_fixed.c"],
              depends=["walloc_edge/runtime/native_encoder.h",
                       "walloc_edge/runtime/native_parallel.h",
                       "walloc_edge/runtime/native_transform.h"],
              extra_compile_args=C99 + ["-pthread"], extra_link_args=["-pthread"],
              optional=True)])
