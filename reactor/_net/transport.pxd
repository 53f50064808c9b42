# Cython declarations for transport.py (pure-Python mode: transport.py is the
# source; reactor/_compiled.py). The compiled module reads and writes the fd
# with recv(2) and send(2) itself (below); the same file run as Python calls
# the socket object's recv_into and send. What it saves, measured: docs/bench.md,
# "The data path in C" (instructions per echo round trip 17,935 -> 9,869).
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_SetFromErrno
from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdlib cimport free, malloc


cdef extern from "<sys/socket.h>" nogil:
    ssize_t c_recv "recv" (int fd, void *buf, size_t n, int flags)
    ssize_t c_send "send" (int fd, const void *buf, size_t n, int flags)
    int c_setsockopt "setsockopt" (int fd, int level, int name, const void *value, unsigned int size)
    enum:
        MSG_DONTWAIT
        MSG_NOSIGNAL

cdef extern from "<netinet/in.h>" nogil:
    enum:
        IPPROTO_TCP

cdef extern from "<netinet/tcp.h>" nogil:
    enum:
        TCP_NODELAY


#: the read area of every transport of the process: what recv(2) fills and
#: the bytes object copies. One is enough: the GIL is held from the recv to
#: the copy (a non-blocking recv does not wait), so no two reads overlap.
cdef char *_read_area
cdef Py_ssize_t _read_area_size

cdef inline bint _would_block(int error) noexcept:
    # EWOULDBLOCK is EAGAIN on Linux (and the BSDs). EINTR too: a
    # non-blocking call interrupted did nothing; the fd is still ready and
    # the next wait says so again (level-triggered).
    return error == EAGAIN or error == EINTR


cdef inline object _recv_fd(int fd, Py_ssize_t size):
    """recv(2) on ``fd`` of up to ``size`` bytes: the bytes read, b"" at EOF,
    None if nothing is there; an OSError (its subclass for the errno, as the
    socket module raises) for any other error. MSG_DONTWAIT: the fd may
    still be blocking (the pure accept path's fds arrive so)."""
    global _read_area, _read_area_size
    if size > _read_area_size:  # the first read (every read asks READ_SIZE)
        free(_read_area)
        _read_area = <char *> malloc(size)
        if _read_area is NULL:
            _read_area_size = 0
            raise MemoryError()
        _read_area_size = size
    cdef ssize_t count = c_recv(fd, _read_area, size, MSG_DONTWAIT)
    if count < 0:
        if _would_block(errno):
            return None
        PyErr_SetFromErrno(OSError)
    return PyBytes_FromStringAndSize(_read_area, count)


cdef inline Py_ssize_t _send_fd(int fd, bytes data) except -1:
    """send(2) of ``data`` on ``fd``: the count the kernel took, 0 if none
    fits now; an OSError for any other error. MSG_NOSIGNAL: a closed peer is
    EPIPE, never SIGPIPE (the module docs)."""
    cdef ssize_t sent = c_send(fd, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data),
                               MSG_DONTWAIT | MSG_NOSIGNAL)
    if sent < 0:
        if _would_block(errno):
            return 0
        PyErr_SetFromErrno(OSError)
    return sent


cdef inline void _nodelay_fd(int fd) noexcept:
    """TCP_NODELAY on ``fd``; a failure is ignored (a reset connection: the
    next send reports it), as the socket object's setsockopt is there."""
    cdef int on = 1
    c_setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on))
