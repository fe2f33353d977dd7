"""Find and load libsageattn, once per process.

The SAGEATTN_LIBRARY environment variable names the shared library to load (e.g. a CMake build's
``build/libsageattn.so``, for use without installing); otherwise the copy that ``pip install``
placed inside the package (``sageattn/lib/``) is loaded.
"""

import ctypes
import functools
import os
import sys
from pathlib import Path

from . import _capi

ENV_VAR = "SAGEATTN_LIBRARY"

# Major version of the C API these bindings mirror (SAGE_VERSION_MAJOR of include/sageattn.h).
API_MAJOR = 0


class LibraryNotFoundError(ImportError):
    """libsageattn could not be found or loaded."""


def library_path():
    """Path of the library that lib() loads (it may not exist)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    name = "libsageattn.dylib" if sys.platform == "darwin" else "libsageattn.so"
    return Path(__file__).resolve().parent / "lib" / name


@functools.lru_cache(maxsize=None)
def lib():
    """The loaded library (ctypes.CDLL) with its prototypes declared; raises LibraryNotFoundError."""
    path = library_path()
    if not path.is_file():
        raise LibraryNotFoundError(
            f"sageattn: libsageattn not found at {path}. Install the package with `pip install ./python`, "
            f"or build the library with CMake and set {ENV_VAR}=/path/to/libsageattn.so")
    try:
        handle = ctypes.CDLL(str(path))
    except OSError as e:
        raise LibraryNotFoundError(f"sageattn: cannot load {path}: {e}") from e
    _capi.declare(handle)
    major = handle.sage_version_number() // 10000
    if major != API_MAJOR:
        raise LibraryNotFoundError(f"sageattn: {path} is version {handle.sage_version_string().decode()}, "
                                   f"these bindings need major version {API_MAJOR}")
    return handle
