# Cython declarations for core.py (pure-Python mode: core.py is the source;
# reactor/_compiled.py). Only what the dispatch reads per event is typed.
from reactor._core.handles cimport Handle

cdef bint _run_now(Handle handle) except -1
