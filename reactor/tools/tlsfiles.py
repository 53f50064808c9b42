"""The server's certificate and key, read from disk into an ``ssl.SSLContext``.

Read once when ``serve`` starts (a bad file is a usage error, exit 2) and
again on a reload (``SIGHUP`` with ``--workers``: a bad file refuses the
reload, and the workers go on with the context loaded before). Workers are
forked from the supervisor with the context in memory, so a certificate
broken on disk never stops a restart.
"""

from __future__ import annotations

import ssl

__all__ = ["load_tls_context"]


class _EncryptedKey(Exception):
    pass


def load_tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context with ``cert`` (a PEM chain) and its unencrypted
    ``key``; ValueError naming the flag and the file that cannot be used."""
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ValueError(f"{flag} {path}: {exc.strerror}") from None
    # The certificate alone first, so that a bad one is named as such
    # (load_cert_chain says "PEM lib" for either file).
    try:
        ssl.create_default_context(cafile=cert)
    except ssl.SSLError as exc:
        why = f" ({exc.reason})" if exc.reason else ""
        raise ValueError(f"--tls-cert {cert}: no PEM certificate in it{why}") from None

    def no_passphrase() -> str:
        raise _EncryptedKey  # instead of a prompt on the terminal

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=no_passphrase)
    except _EncryptedKey:
        raise ValueError(f"--tls-key {key}: the key is encrypted; serve needs it unencrypted") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(f"--tls-key {key} is not the key of --tls-cert {cert}") from None
        why = f" ({exc.reason})" if exc.reason else ""
        raise ValueError(f"--tls-key {key}: no PEM private key in it{why}") from None
    return context
