"""A listener's settings as one checked, immutable value
(reactor/_net/listener_options.py), and the public keywords that build it:
``Reactor.listen``/``listen_unix`` and ``ListenerOptions`` must stay in step,
and every keyword must reach the listener."""

from __future__ import annotations

import dataclasses
import inspect
import os
import ssl

import pytest

import reactor
from reactor._net.binding import listen_tcp
from reactor._net.listener_options import ListenerOptions
from reactor._net.proxy import TrustedSources

from ..support import Factory

#: Reactor.listen's keywords that are about the socket, not the listener (binding.py)
BINDING_KEYWORDS = {"protocol_factory", "host", "port", "sock", "reuse_port"}
#: settings that only mean something on TCP (listen_unix does not take them)
TCP_ONLY = {"keepalive", "user_timeout"}
#: derived from another field, never passed
DERIVED = {"user_timeout_ms"}

#: a value other than the default for every setting, and what the options keep of it
SAMPLES = {
    "backlog": (5, 5),
    "max_accepts": (3, 3),
    "on_exhausted": ("shed", "shed"),
    "keepalive": ((7, 3, 4), (7, 3, 4)),
    "user_timeout": (2, 2.0),
    "ssl": (ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), None),  # kept as given (checked below)
    "ssl_handshake_timeout": (5, 5.0),
    "ssl_shutdown_timeout": (6, 6.0),
    "idle_timeout": (7, 7.0),
    "max_connections": (9, 9),
    "proxy_protocol": (True, True),
    "proxy_timeout": (3, 3.0),
    "proxy_from": ("10.0.0.0/8, ::1", None),  # becomes TrustedSources (checked below)
}


def option_fields() -> dict[str, dataclasses.Field]:
    return {field.name: field for field in dataclasses.fields(ListenerOptions) if field.name not in DERIVED}


def keywords(function) -> dict[str, inspect.Parameter]:
    return {name: parameter for name, parameter in inspect.signature(function).parameters.items()
            if name != "self"}


def test_listen_keywords_are_the_options_fields_with_the_same_defaults():
    """A setting added to ListenerOptions and not to listen (or the other way
    round, or with another default) fails here."""
    fields = option_fields()
    listen = {name: p for name, p in keywords(reactor.Reactor.listen).items() if name not in BINDING_KEYWORDS}
    assert set(listen) == set(fields)
    unix = {name: p for name, p in keywords(reactor.Reactor.listen_unix).items()
            if name not in {"protocol_factory", "path"}}
    assert set(unix) == set(fields) - TCP_ONLY
    for name, parameter in (*listen.items(), *unix.items()):
        assert parameter.default == fields[name].default, name
    assert set(SAMPLES) == set(fields), "give every new setting a sample value here"


def with_samples(names) -> dict:
    return {name: SAMPLES[name][0] for name in names}


def check_kept(options: ListenerOptions, names) -> None:
    for name in names:
        given, kept = SAMPLES[name]
        value = getattr(options, name)
        if name == "ssl":
            assert value is given
        elif name == "proxy_from":
            assert isinstance(value, TrustedSources) and [str(n) for n in value.networks] == ["10.0.0.0/8", "::1/128"]
        else:
            assert value == kept and type(value) is type(kept), name


def test_every_listen_keyword_reaches_the_listener(loop):
    names = list(option_fields())
    lst = loop.listen(Factory(), **with_samples(names))
    try:
        check_kept(lst.options, names)
        assert lst.options.user_timeout_ms == 2000
        # and the listener acts on them
        assert (lst.backlog, lst.max_accepts, lst.on_exhausted, lst.max_connections, lst.idle_timeout) == \
               (5, 3, "shed", 9, 7.0)
        assert lst.ssl_context is SAMPLES["ssl"][0] and lst.proxy_protocol and lst.proxy_from is lst.options.proxy_from
    finally:
        lst.close()


def test_every_listen_unix_keyword_reaches_the_listener(loop, short_dir):
    names = [name for name in option_fields() if name not in TCP_ONLY]
    lst = loop.listen_unix(Factory(), os.path.join(short_dir, "s"), **with_samples(names))
    try:
        check_kept(lst.options, names)
        assert lst.proxy_from is None  # who may connect to a Unix socket is its file's mode
    finally:
        lst.close()


def test_options_are_checked_once_when_made_and_again_by_replace():
    options = ListenerOptions(**with_samples(option_fields()))
    check_kept(options, option_fields())
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.max_accepts = 0
    # replace() checks again, and takes the normalised values as they are
    again = dataclasses.replace(options, max_connections=10)
    assert again.max_connections == 10 and again.proxy_from is options.proxy_from
    assert again.keepalive == options.keepalive and again.user_timeout_ms == 2000
    with pytest.raises(ValueError, match="max_accepts"):
        dataclasses.replace(options, max_accepts=0)
    with pytest.raises(ValueError, match="proxy_from"):
        dataclasses.replace(options, proxy_protocol=False)  # a TrustedSources without the protocol


def test_a_listener_keeps_the_options_it_was_given(loop):
    options = ListenerOptions(max_accepts=2, idle_timeout=30)
    lst = listen_tcp(loop, Factory(), options=options)
    try:
        assert lst.options is options and lst.max_accepts == 2 and lst.idle_timeout == 30.0
    finally:
        lst.close()
    default = loop.listen(Factory())
    try:
        assert default.options == ListenerOptions()
    finally:
        default.close()
