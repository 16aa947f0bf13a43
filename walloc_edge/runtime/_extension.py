"""Loading one of the optional C extensions (rans loops, the native encoder) through ctypes:
the library, or None and the reason it is not used."""
import ctypes
import importlib.util
import os


def load_extension(module, abi_function, abi):
    """(ctypes library, None) for the built extension ``module`` (a dotted name) whose
    ``abi_function()`` returns ``abi``; (None, why) where WALLOC_EDGE_NATIVE=0 turns the C
    code off, it was not built, or it is from another version (a stale build)."""
    if os.environ.get("WALLOC_EDGE_NATIVE", "1") == "0":
        return None, "turned off by WALLOC_EDGE_NATIVE=0"
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        return None, "the C extension was not built (no C compiler when it was installed)"
    lib = ctypes.CDLL(spec.origin)
    if not hasattr(lib, abi_function) or getattr(lib, abi_function)() != abi:
        return None, ("the C extension is from another version of walloc-edge (reinstall it "
                      "to rebuild it)")
    return lib, None
