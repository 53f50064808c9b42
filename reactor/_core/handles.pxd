# Cython declarations for handles.py (pure-Python mode: handles.py is the source).
cdef class Handle:
    cdef public object _callback
    cdef public object _args
    cdef public object _reactor
    cdef public bint _cancelled
    cdef object __weakref__

cdef class TimerHandle(Handle):
    cdef public object when
    cdef public bint _scheduled
