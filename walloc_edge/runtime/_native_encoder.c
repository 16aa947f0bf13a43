/* The Python module around native_encoder.c: it only makes the library importable (and so
 * found by pip and importlib); backends/native.py calls its functions through ctypes. */
#include <Python.h>

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native_encoder",
                                    "The sensor encoder in C (called through ctypes).",
                                    -1, NULL};

PyMODINIT_FUNC PyInit__native_encoder(void) { return PyModule_Create(&module); }
