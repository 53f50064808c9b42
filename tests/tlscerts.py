"""Certificates for the TLS tests, made by the test run with the openssl CLI.

A private CA, a server certificate it signed for ``localhost`` and
``127.0.0.1`` (what a client checks), and a self-signed certificate no
client trusts (the "bad certificate" case). Made once per test session into
a temporary directory; a machine without the openssl command skips the
tests that need them.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["Certs", "make_certs", "self_signed", "server_context", "client_context"]


@dataclass(frozen=True)
class Certs:
    ca: Path  # the CA certificate clients trust
    cert: Path  # the server's certificate (for localhost and 127.0.0.1)
    key: Path  # its key
    untrusted_cert: Path  # self-signed, for localhost: no client trusts it
    untrusted_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _need_openssl() -> None:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed (Debian: apt-get install openssl)")


def self_signed(directory: Path | str, name: str = "self-signed") -> tuple[str, str]:
    """``(cert, key)`` paths: a self-signed certificate for localhost and
    127.0.0.1 with an unencrypted key, in ``directory`` (skips without openssl)."""
    _need_openssl()
    cert, key = f"{name}.pem", f"{name}.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert,
             cwd=Path(directory))
    return str(Path(directory) / cert), str(Path(directory) / key)


def make_certs(directory: Path) -> Certs:
    """Make the CA and certificates in ``directory`` (skips without openssl)."""
    _need_openssl()
    d = directory
    # The extensions RFC 5280 asks for, which Python 3.13's default context
    # checks (VERIFY_X509_STRICT): a CA with key usage, a leaf naming its
    # issuer's key.
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=reactor test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
                                  "basicConstraints=critical,CA:FALSE\n"
                                  "keyUsage=critical,digitalSignature,keyEncipherment\n"
                                  "extendedKeyUsage=serverAuth\n"
                                  "subjectKeyIdentifier=hash\n"
                                  "authorityKeyIdentifier=keyid,issuer\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
             "-out", "server.csr", cwd=d)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "server.ext", "-out", "server.pem", cwd=d)
    untrusted_cert, untrusted_key = self_signed(d, "untrusted")
    return Certs(d / "ca.pem", d / "server.pem", d / "server.key", Path(untrusted_cert), Path(untrusted_key))


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def client_context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))
