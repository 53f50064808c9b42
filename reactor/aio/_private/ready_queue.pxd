# Cython declarations for ready_queue.py (pure-Python mode: ready_queue.py is
# the source; reactor/_compiled.py). The compiled module reads the fields of
# asyncio's Handle and TimerHandle where their __slots__ put them, and runs a
# callback in its context with PyContext_Enter/Exit; run as Python, it reads
# the attributes and calls Context.run (the module docs).
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF


cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
        int flags
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member
    int PyContext_Enter(object context) except -1
    int PyContext_Exit(object context) except -1
    # a __slots__ entry: an object reference, AttributeError while unset
    enum:
        T_OBJECT_EX


#: where a Handle keeps each field (bytes from the object's start), read at
#: import from the class's slot descriptors; -1 until then
cdef Py_ssize_t _cancelled_at
cdef Py_ssize_t _callback_at
cdef Py_ssize_t _args_at
cdef Py_ssize_t _context_at
cdef Py_ssize_t _loop_at
cdef Py_ssize_t _repr_at
cdef Py_ssize_t _source_traceback_at


cdef inline Py_ssize_t _slot_offset(object owner, str name) except -2:
    """The offset of ``owner``'s slot ``name``, or -1 if ``name`` is not a
    plain object slot there (then the compiled module reads attributes)."""
    descriptor = owner.__dict__.get(name)
    if descriptor is None or type(descriptor).__name__ != "member_descriptor":
        return -1
    cdef PyMemberDef *member = (<PyMemberDescrObject *> <PyObject *> descriptor).d_member
    if member.type != T_OBJECT_EX or member.flags != 0:
        return -1
    return member.offset


cdef inline object _slot(object handle, Py_ssize_t offset):
    """``handle``'s field at ``offset`` (an exact Handle or TimerHandle),
    as reading the attribute gives it."""
    cdef PyObject *value = (<PyObject **> ((<char *> <PyObject *> handle) + offset))[0]
    if value is NULL:
        raise AttributeError(f"'{type(handle).__name__}' object has no attribute at offset {offset}")
    return <object> value


cdef inline void _slot_store(object handle, Py_ssize_t offset, object value) noexcept:
    """Set ``handle``'s field at ``offset`` to ``value``, as assigning the
    attribute does (an exact Handle, whose slots these offsets are)."""
    cdef PyObject **slot = <PyObject **> ((<char *> <PyObject *> handle) + offset)
    cdef PyObject *old = slot[0]
    Py_INCREF(value)
    slot[0] = <PyObject *> value
    Py_XDECREF(old)


cdef inline object _run_in(object context, object callback, object args):
    """``context.run(callback, *args)`` for a ``contextvars.Context``: the
    same enter, call and exit, without looking up and calling ``run``."""
    PyContext_Enter(context)
    try:
        if args:
            return callback(*args)
        return callback()
    finally:
        PyContext_Exit(context)
