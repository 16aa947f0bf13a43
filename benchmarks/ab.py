"""What the build-against-build benchmarks share (native_ab.py, rans_ab.py): the options
naming the two builds of a C extension, and the base build loaded from its .so with the
installed extension's signatures, so that both are called alike."""
import ctypes


def add_build_options(p):
    p.add_argument("--base", required=True, help="the build to compare against (.so)")
    p.add_argument("--new", help="the build under test (default: the installed extension)")


def builds(args, installed, entry_points):
    """{"base": ..., "new": ...}: the libraries --base and --new name (--new: default
    ``installed``), each with ``installed``'s signatures of ``entry_points``."""
    def library(path):
        lib = ctypes.CDLL(path)
        for name in entry_points:
            getattr(lib, name).restype = getattr(installed, name).restype
            getattr(lib, name).argtypes = getattr(installed, name).argtypes
        return lib
    return {"base": library(args.base), "new": library(args.new) if args.new else installed}
