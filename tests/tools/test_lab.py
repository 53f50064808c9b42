"""``python -m reactor lab``: every scenario is a test of what the kernel did.

Each scenario runs once (in this process, on loopback or in namespaces it
makes), with the three readiness backends side by side and a tap on its
wire; the tests assert the errnos and states it recorded, per backend the
readiness each one reported at the steps that matter, and the segments the
kernel sent (its script, and what each scenario is about). Namespace
scenarios skip with the lab's own reason where namespaces cannot be made;
the wire's checks skip where no packet tap can be opened (no CAP_NET_RAW).
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time

import pytest

from reactor.tools.lab import SCENARIOS, Outcome, Step, run_scenario
from reactor.tools.lab.probe import available
from reactor.tools.lab.timeline import TO_CLIENT, TO_SERVER, Segment, format_outcome

BACKENDS = available()
_outcomes: dict[str, Outcome] = {}


def outcome(name: str) -> Outcome:
    """The scenario's outcome, run once per test session; skips or fails as it did."""
    if name not in _outcomes:
        _outcomes[name] = run_scenario(SCENARIOS[name], BACKENDS)
    result = _outcomes[name]
    if result.status == "skipped":
        pytest.skip(result.reason)
    assert result.status == "ok", f"{result.reason}\n{result.facts.get('traceback', '')}"
    return result


def ready(step: Step, sock: str, backend: str) -> set[str]:
    return set(step.sock(sock).ready[backend])


def readable(step: Step, sock: str, backend: str) -> bool:
    flags = ready(step, sock, backend)
    return "r" in flags if backend == "select" else "IN" in flags


def writable(step: Step, sock: str, backend: str) -> bool:
    flags = ready(step, sock, backend)
    return "w" in flags if backend == "select" else "OUT" in flags


def error_reported(step: Step, sock: str, backend: str) -> bool:
    """poll and epoll say ERR; select, which has no bit for it, says readable and writable."""
    flags = ready(step, sock, backend)
    return {"r", "w"} <= flags if backend == "select" else "ERR" in flags


def wire(o: Outcome, conn: str = "cli") -> list[Segment] | None:
    """The segments of one connection of the scenario, once its wire
    matched its script; None where no tap could be opened here."""
    assert o.wire is not None
    if o.wire.status == "not captured":
        return None
    assert o.wire.status == "matched", format_outcome(o, BACKENDS)
    return [s for s in o.wire.segments if s.conn == conn]


def flags(segments: list[Segment]) -> list[str]:
    """``"→ SYN"``, ``"← SYN/ACK"``... (PSH aside: whether a write sets it is not the point)."""
    return [f"{s.way} {s.flags.replace('PSH/', '')}" for s in segments]


HANDSHAKE = ["→ SYN", "← SYN/ACK", "→ ACK"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def test_every_scenario_is_listed_and_tested():
    tested = {name.removeprefix("test_").replace("_", "-") for name in globals() if name.startswith("test_")}
    assert set(SCENARIOS) <= tested | {"linger0"}, set(SCENARIOS) - tested
    assert len(SCENARIOS) == 15


def test_handshake(backend):
    o = outcome("handshake")
    assert o.facts["connect"] == "EINPROGRESS"
    assert o.facts["client_state_after_connect"] == "ESTABLISHED"  # loopback: done inside connect()
    assert o.facts["accept_queue"] == 1
    connect = o.step("cli: connect")
    assert readable(connect, "lsn", backend) and writable(connect, "cli", backend)
    accepted = o.step("lsn: accept")
    assert not readable(accepted, "lsn", backend) and accepted.sock("srv").state == "ESTABLISHED"
    # the SYN queue: a request socket, and a listener nobody reports readable
    assert o.facts["syn_queue"] == 1 and o.facts["accept_queue_deferred"] == 0
    assert not readable(o.step("sock_diag"), "dfr", backend)
    assert readable(o.step("cli2: send"), "dfr", backend)
    assert o.facts["syn_queue_after_data"] == 0
    if (cli := wire(o)) is not None:
        assert flags(cli) == [*HANDSHAKE, "→ RST/ACK"]
        syn, syn_ack, ack, _ = cli
        assert "mss" in syn.options and syn_ack.ack == 1 and (ack.seq, ack.ack) == (1, 1)
        assert ack.t < accepted.end, "the third segment comes before accept() returns"
        deferred = wire(o, "cli2")
        assert flags(deferred)[:4] == [*HANDSHAKE, "→ ACK"] and deferred[3].length == 3
        assert deferred[3].t < o.step("dfr: accept").end


def test_backlog(backend):
    o = outcome("backlog")
    assert o.facts["states_after_connect"] == ["ESTABLISHED", "ESTABLISHED", "SYN_SENT", "SYN_SENT"]
    assert o.facts["listen_overflows_delta"] >= 2  # a counter of the whole namespace: at least ours
    first, admitted = o.facts["syn_retransmit_times"]
    assert 0.8 < first < 1.6, "Linux's first SYN retransmission comes after its initial rto of 1 s"
    assert admitted > first + 0.5, "only a later retransmission finds the room"
    assert o.facts["listen_overflows_total"] > o.facts["listen_overflows_delta"]
    step = o.step("c4: connect")
    assert readable(step, "lsn", backend)
    assert not writable(step, "c3", backend) and not writable(step, "c4", backend)
    assert step.sock("lsn").detail == "accept q 2/1"
    # a SYN answered while the winner's handshake was in flight: its ACK was dropped, the server keeps a request
    assert o.facts["half_open"] == len(o.facts["late_established"]) - 1
    if wire(o) is not None:
        accepted = o.step("lsn: accept")
        answered = []
        for name in ("c3", "c4"):
            segments = wire(o, name)
            syns = [s for s in segments if s.flags == "SYN"]
            assert len(syns) >= 2 and 0.9 < syns[1].t - syns[0].t < 1.6, "the SYN is resent at the initial rto, 1 s"
            replies = [s for s in segments if s.way == TO_CLIENT]
            assert all(r.t > accepted.start for r in replies), "no SYN is answered while the queue is full"
            answered += [name] if replies else []
        assert answered and set(answered) == set(o.facts["late_established"])


def test_rst_before_accept(backend):
    o = outcome("rst-before-accept")
    assert o.facts["queue_after_rst"] == 1 and o.facts["accept"] == "ok"
    assert o.facts["accepted_state"] == "CLOSE"
    assert o.facts["getpeername"] == "ENOTCONN" and o.facts["recv"] == "ECONNRESET"
    assert readable(o.step("cli: setsockopt(SO_LINGER"), "lsn", backend)
    accepted = o.step("lsn: accept")
    assert error_reported(accepted, "srv", backend)
    if backend != "select":
        assert {"HUP", "RDHUP"} <= ready(accepted, "srv", backend)
    if (cli := wire(o)) is not None:
        assert flags(cli) == [*HANDSHAKE, "→ RST/ACK"], "accept(), getpeername() and recv() send nothing"


def test_stale_readiness(backend):
    o = outcome("stale-readiness")
    assert o.facts["reported_readable"][backend] is True
    assert not readable(o.step("sibling"), "lsn", backend)
    assert o.facts["late_accept"] == "EAGAIN"
    if (cli := wire(o)) is not None:
        assert flags(cli) == HANDSHAKE


def test_refused(backend):
    o = outcome("refused")
    assert o.facts["connect"] == "EINPROGRESS"
    assert o.facts["so_error"] == "ECONNREFUSED" and o.facts["so_error_again"] == "0"
    step = o.step("cli: connect")
    assert writable(step, "cli", backend) and error_reported(step, "cli", backend)
    assert step.sock("cli").state == "CLOSE"
    if backend != "select":  # once SO_ERROR is read, ERR is gone
        assert "ERR" not in ready(o.step("cli: getsockopt(SO_ERROR)", nth=0), "cli", backend)
    if (cli := wire(o)) is not None:
        assert flags(cli) == ["→ SYN", "← RST/ACK"]
        assert cli[1].ack == 1 and cli[1].win == 0, "the RST acknowledges the SYN (RFC 793: it had no ACK)"


def test_connect_timeout(backend):
    o = outcome("connect-timeout")
    assert o.facts["so_error"] == "ETIMEDOUT"
    assert 1.3 < o.facts["gave_up_after"] < 3.0  # TCP_USER_TIMEOUT 1.5 s
    waiting = o.step("cli: connect")
    assert waiting.sock("cli").state == "SYN_SENT" and not writable(waiting, "cli", backend)
    assert "SYN_SENT" in o.states("cli") and o.states("cli")[-1] == "CLOSE"
    if (cli := wire(o)) is not None:
        assert flags(cli) == ["→ SYN", "→ SYN"], "the user timeout gives up in silence: no RST"
        assert cli[1].retransmission and 0.9 < cli[1].t - cli[0].t < 1.6


def test_unreachable(backend):
    o = outcome("unreachable")
    assert o.facts["connect"] == "EINPROGRESS"
    assert o.facts["so_error"] == "EHOSTUNREACH"
    assert o.facts["icmp_after"] < 0.5, "the router's ICMP comes back in one round trip, not after a retry"
    assert error_reported(o.step("cli: connect"), "cli", backend)
    assert o.facts["no_route"] == "ENETUNREACH"
    # an ICMP that finds the socket held by a call is soft: the SYN is resent and the next ICMP ends it
    assert o.facts["icmp_while_held"] in (0, 1)
    resent = o.facts["icmp_while_held"] == 1
    assert o.facts["state_after_icmp"] == ("SYN_SENT" if resent else "CLOSE")
    assert o.facts["closed_after"] is not None and (0.9 < o.facts["closed_after"] < 1.6 if resent else True)
    if (cli := wire(o)) is not None:
        assert flags(cli) == ["→ SYN", "← ICMP host unreachable"] * (2 if resent else 1)
        assert cli[1].src == "10.251.1.1"
        assert wire(o, "cli2") == [], "no route: nothing leaves"


def test_close(backend):
    o = outcome("close")
    assert o.facts["server_after_fin"] == "CLOSE_WAIT"
    assert o.facts["client_after_close"] in ("FIN_WAIT1", "FIN_WAIT2")
    fin = o.step("cli: close")
    assert readable(fin, "srv", backend)
    if backend != "select":
        assert "RDHUP" in ready(fin, "srv", backend) and "HUP" not in ready(fin, "srv", backend)
    # FIN_WAIT2 only if the ACK of our FIN came before the server's FIN (it may ride on it)
    assert o.states("cli")[0] == "ESTABLISHED" and o.states("cli")[-1] == "TIME_WAIT"
    assert set(o.states("cli")[1:-1]) <= {"FIN_WAIT1", "FIN_WAIT2"} and o.states("cli")[1] == "FIN_WAIT1"
    assert o.states("srv") == ["ESTABLISHED", "CLOSE_WAIT", "closed"]
    assert o.facts["time_wait"] == 1 and 55 < o.facts["time_wait_left"] <= 60
    if (cli := wire(o)) is not None:
        # the ACK of the client's FIN is delayed: alone, or on the server's FIN
        assert flags(cli)[3:] in (["→ FIN/ACK", "← FIN/ACK", "→ ACK"], ["→ FIN/ACK", "← ACK", "← FIN/ACK", "→ ACK"])
        fin, last = cli[3], cli[-1]
        assert cli[-2].ack == fin.seq + 1 and last.way == TO_SERVER, "the closer sends the last ACK"


def test_last_ack(backend):
    o = outcome("last-ack")
    assert o.facts["server_after_close"] == "LAST_ACK"
    assert o.facts["last_ack_lasted"] is not None and o.facts["last_ack_lasted"] < 3
    assert "LAST_ACK" in o.states("srv") and o.states("srv")[-1] == "closed"
    assert o.states("cli")[-1] == "TIME_WAIT"
    assert readable(o.step("srv: recv"), "srv", backend)
    if (cli := wire(o)) is not None:
        fins = [s for s in cli if s.way == TO_CLIENT and "FIN" in s.flags]
        assert len(fins) >= 2 and len({s.seq for s in fins}) == 1, "the same FIN, resent"
        assert all(s.retransmission for s in fins[1:]) and cli[-1].ack == fins[0].seq + 1


def test_half_close(backend):
    o = outcome("half-close")
    assert o.facts["client_after_shutdown"] in ("FIN_WAIT1", "FIN_WAIT2")
    assert o.facts["half_closed_reads"] == b"reply"
    assert o.facts["reply_after_close"] == "CLOSE" and o.facts["second_send"] == "EPIPE"
    assert writable(o.step("cli: shutdown"), "cli", backend), "a half-closed socket still reports writable"
    assert error_reported(o.step("srv2: send", nth=0), "srv2", backend)
    if (cli := wire(o)) is not None:
        fin = next(i for i, s in enumerate(cli) if s.flags == "FIN/ACK")
        reply = next(i for i, s in enumerate(cli) if s.way == TO_CLIENT and s.length)
        assert fin < reply and cli[reply].ack == cli[fin].seq + 1, "data the other way after the FIN"
        assert any(s.way == TO_SERVER and s.ack == cli[reply].seq + 5 for s in cli[reply:]), "and it is acked"
        closed = wire(o, "cli2")
        assert flags(closed)[-2:] == ["← ACK", "→ RST"] and closed[-1].seq == closed[-2].ack


def test_unread_close(backend):
    o = outcome("unread-close")
    assert o.facts["client_after"] == "CLOSE" and o.facts["recv"] == "ECONNRESET"
    assert o.facts["time_wait"] == 0
    assert error_reported(o.step("srv: close"), "cli", backend)
    if (cli := wire(o)) is not None:
        assert flags(cli)[-1] == "← RST/ACK" and not any("FIN" in s.flags for s in cli)


def test_linger_zero(backend):
    o = outcome("linger0")
    assert o.facts["server_after"] == "CLOSE" and o.facts["recv"] == "ECONNRESET"
    assert o.facts["time_wait"] == 0
    assert error_reported(o.step("cli: setsockopt(SO_LINGER"), "srv", backend)
    assert o.states("cli") == ["ESTABLISHED", "closed"], "no FIN_WAIT, no TIME_WAIT"
    if (cli := wire(o)) is not None:
        assert flags(cli) == [*HANDSHAKE, "→ RST/ACK"]


def test_server_killed(backend):
    o = outcome("server-killed")
    assert o.facts["client_after_kill"] == "CLOSE_WAIT"
    assert o.facts["client_after_write"] == "CLOSE"
    assert o.facts["send_after_rst"] == "EPIPE" and o.facts["send_without_flag"] == "EPIPE"
    assert o.facts["sigpipe"] == {"MSG_NOSIGNAL": 0, "no flag": 1}
    assert readable(o.step("kill"), "cli", backend)
    assert error_reported(o.step("cli: send(", nth=0), "cli", backend)
    if (cli := wire(o)) is not None:
        after = [f for f in flags(cli)[3:] if f != "→ ACK"]  # the client's ACK of the FIN may ride on its data
        assert after == ["← FIN/ACK", "← RST"] and cli[-2].length == 4, "FIN, then RST for the next write"
        assert cli[3].t > o.step("kill").start


def test_link_pulled(backend):
    o = outcome("link-pulled")
    timeline = format_outcome(o, BACKENDS)  # what the kernel did, shown if an assertion fails
    assert o.facts["server_got_after_pull"] in (0, None), f"the black hole leaked\n{timeline}"
    assert o.facts["recv"] == "ETIMEDOUT", timeline
    # TCP_USER_TIMEOUT is 1 s, but it is checked only when the retransmission
    # timer fires: the give-up comes at the first firing past 1 s (the first
    # rto is the connection's own, ~200 ms on an idle host)
    first_rto = o.facts["rto_before_ms"] / 1000
    assert 0.8 < o.facts["gave_up_after"] < max(1.0, first_rto) + 2.0, timeline
    times = o.facts["retransmissions"]
    assert times and times == sorted(times)
    assert o.facts["server_state"] == "ESTABLISHED", "the server never hears of it"
    assert error_reported(o.step("cli: TCP_INFO", nth=len(times)), "cli", backend)
    if (cli := wire(o)) is not None:
        sent = o.step("cli: send(b'are you there?'")
        later = [s for s in cli if s.t > sent.start]
        assert all(s.way == TO_SERVER and s.length == 14 for s in later), "nothing but our write, again and again"
        # at least one resend within the 1 s user timeout (the first rto is the connection's own: 200 ms idle)
        assert len(later) >= 2 and len({s.seq for s in later}) == 1
        gaps = [b.t - a.t for a, b in zip(later, later[1:], strict=False)]
        assert min(gaps) > 0.15, "no resend before the 200 ms floor"


def test_reboot(backend):
    o = outcome("reboot")
    assert o.facts["client_before"] == "ESTABLISHED"
    assert o.facts["client_after"] == "CLOSE" and o.facts["recv"] == "ECONNRESET"
    assert error_reported(o.step("cli: send("), "cli", backend)
    if (cli := wire(o)) is not None:
        data, rst = cli[-2:]
        assert (data.way, data.length, rst.way, rst.flags) == (TO_SERVER, 12, TO_CLIENT, "RST")
        assert rst.seq == data.ack, "RFC 793: a RST answering an ACK takes its sequence number from it"


# ------------------------------------------------------------------- the CLI

def lab(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reactor", "lab", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_list_names_every_scenario():
    done = lab("--list")
    assert done.returncode == 0
    for name in SCENARIOS:
        assert name in done.stdout


def test_unknown_scenario_exits_2():
    done = lab("handshake", "no-such")
    assert done.returncode == 2 and "unknown scenario no-such" in done.stderr


def test_json_and_backend_choice(tmp_path):
    path = tmp_path / "lab.json"
    done = lab("refused", "linger0", "--backend", "select,epoll", "--json", str(path))
    assert done.returncode == 0, done.stderr
    assert "== refused" in done.stdout and "== linger0" in done.stdout and " poll " not in done.stdout
    document = json.loads(path.read_text())
    assert document["backends"] == ["select", "epoll"]
    refused = document["scenarios"][0]
    assert refused["name"] == "refused" and refused["status"] == "ok"
    step = next(s for s in refused["steps"] if s["call"].startswith("cli: getsockopt"))
    assert step["errno"] == "ECONNREFUSED" and set(step["sockets"][1]["ready"]) == {"select", "epoll"}


def test_every_scenario_runs_in_under_a_minute_and_the_kernel_keeps_every_script(tmp_path):
    """The lab's conformance run, as a user runs it: every scenario, its
    wire checked (exit 0 only if the kernel kept every script), every
    ladder drawn."""
    draw = None
    try:
        import matplotlib  # noqa: F401

        draw = tmp_path / "ladders"
    except ImportError:
        pass
    path = tmp_path / "lab.json"
    done = lab("--json", str(path), *(["--draw", str(draw)] if draw else []), timeout=150)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    summary = next(line for line in done.stdout.splitlines() if line.startswith("lab: "))
    assert " 0 failed" in summary, summary
    took = float(re.search(r" in ([\d.]+) s ", summary).group(1))
    assert took < 60, f"the whole lab took {took:.1f} s"
    for name in SCENARIOS:
        assert f"== {name}:" in done.stdout
    ran = [s for s in json.loads(path.read_text())["scenarios"] if s["status"] != "skipped"]
    verdicts = {s["name"]: s["wire"]["status"] for s in ran}
    if os.geteuid() == 0:  # root has CAP_NET_RAW: every scenario is captured and kept its script
        assert set(verdicts.values()) == {"matched"}, verdicts
    assert set(verdicts.values()) <= {"matched", "not captured"}, verdicts
    if draw is not None:
        for s in ran:
            assert (draw / f"{s['name']}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            svg = (draw / f"{s['name']}.svg").read_text()
            assert svg.startswith("<?xml") and (not s["wire"]["segments"] or 'id="segment-0"' in svg)


def test_draw_without_matplotlib_is_a_usage_error(monkeypatch, tmp_path, capsys):
    from reactor.tools.cli import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(SystemExit) as exited:
        main(["lab", "refused", "--draw", str(tmp_path)])
    assert exited.value.code == 2 and "--draw needs matplotlib" in capsys.readouterr().err


def test_without_cap_net_raw_the_lab_says_so_and_runs_as_before(tmp_path):
    """A real process without CAP_NET_RAW (root, its bounding set without
    it: setpriv from util-linux): no tap, every call as before, exit 0."""
    import shutil

    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv (util-linux) to take CAP_NET_RAW away")
    path = tmp_path / "lab.json"
    done = subprocess.run(["setpriv", "--bounding-set", "-net_raw", "--", sys.executable, "-m", "reactor", "lab",
                           "refused", "--json", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "wire: not captured: a packet capture needs CAP_NET_RAW (root)" in done.stdout
    refused = json.loads(path.read_text())["scenarios"][0]
    assert refused["status"] == "ok" and refused["facts"]["so_error"] == "ECONNREFUSED"
    assert refused["wire"]["status"] == "not captured" and refused["wire"]["segments"] == []


# ------------------------------------------------------------- the skips

def test_namespace_scenarios_skip_with_the_reason_where_namespaces_cannot_be_made(monkeypatch):
    monkeypatch.setattr("reactor.tools.lab.runner.unavailable_reason", lambda: "network namespaces need root")
    skipped = run_scenario(SCENARIOS["reboot"], BACKENDS)
    assert skipped.status == "skipped" and skipped.reason == "network namespaces need root"
    assert run_scenario(SCENARIOS["refused"], BACKENDS).status == "ok", "loopback scenarios do not need them"


def test_a_lost_path_without_tc_is_skipped_with_the_reason(monkeypatch):
    import shutil

    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "tc" else which(name))
    result = run_scenario(SCENARIOS["link-pulled"], BACKENDS)
    if result.status == "skipped" and "tc" not in result.reason:
        pytest.skip(result.reason)  # no namespaces here at all
    assert result.status == "skipped" and "no `tc` command" in result.reason


def test_without_a_packet_tap_the_timeline_says_so_and_the_rest_runs(monkeypatch):
    from reactor.tools.lab import session
    from reactor.tools.lab.wire import CaptureUnavailable

    def refuse(*args, **kwargs):
        raise CaptureUnavailable(1, "a packet capture needs CAP_NET_RAW (root)")

    monkeypatch.setattr(session, "Capture", refuse)
    o = run_scenario(SCENARIOS["refused"], BACKENDS)
    assert o.status == "ok" and o.facts["so_error"] == "ECONNREFUSED"
    assert o.wire.status == "not captured" and o.wire.segments == []
    assert "wire: not captured: a packet capture needs CAP_NET_RAW" in format_outcome(o, BACKENDS)


# ------------------------------------------------------------------ the wire

def ipv4_tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, bits: int, *, window: int = 1000,
             options: bytes = b"", payload: bytes = b"") -> bytes:
    """An IPv4 TCP segment as a SOCK_DGRAM packet socket gives it (from the IP header)."""
    options += b"\x01" * (-len(options) % 4)  # NOP padding to a 32-bit boundary
    offset = (20 + len(options)) // 4
    tcp = struct.pack("!HHIIHHHH", sport, dport, seq, ack, (offset << 12) | bits, window, 0, 0) + options + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, socket.inet_aton(src),
                     socket.inet_aton(dst))
    return ip + tcp


SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08
SYN_OPTIONS = b"\x02\x04\x05\xb4" + b"\x04\x02" + b"\x08\x0a" + struct.pack("!II", 7, 0) + b"\x01\x03\x03\x07"


def test_wire_parses_a_syn_with_its_options_and_data_with_its_length():
    from reactor.tools.lab.wire import flag_names, options_text, parse

    syn = parse(ipv4_tcp("10.0.0.1", "10.0.0.2", 40000, 80, 1000, 0, SYN, window=64240, options=SYN_OPTIONS))
    assert (syn.src, syn.dst, syn.seq, syn.window, syn.length) == (("10.0.0.1", 40000), ("10.0.0.2", 80), 1000,
                                                                     64240, 0)
    assert flag_names(syn.flags) == "SYN" and options_text(syn.options) == "mss 1460,sackOK,TS,wscale 7"
    data = parse(ipv4_tcp("10.0.0.2", "10.0.0.1", 80, 40000, 5, 6, PSH | ACK, payload=b"hello"))
    assert flag_names(data.flags) == "PSH/ACK" and data.length == 5 and data.options == {}
    assert parse(b"") is None and parse(ipv4_tcp("1.1.1.1", "2.2.2.2", 1, 2, 0, 0, SYN)[:30]) is None


def test_wire_parses_ipv6_and_an_icmp_error_about_our_segment():
    from reactor.tools.lab.wire import parse

    tcp = ipv4_tcp("0.0.0.0", "0.0.0.0", 40000, 443, 9, 0, SYN)[20:]
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, 64, socket.inet_pton(socket.AF_INET6, "::1"),
                      socket.inet_pton(socket.AF_INET6, "::2")) + tcp
    v6 = parse(ip6)
    assert (v6.src, v6.dst, v6.seq) == (("::1", 40000), ("::2", 443), 9)
    quoted = ipv4_tcp("10.251.1.2", "10.251.9.9", 40000, 80, 77, 0, SYN)[:28]  # RFC 792: IP header + 8 bytes
    icmp = struct.pack("!BBHI", 3, 1, 0, 0) + quoted
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, 64, 1, 0, socket.inet_aton("10.251.1.1"),
                     socket.inet_aton("10.251.1.2"))
    error = parse(ip + icmp)
    assert error.icmp == "host unreachable" and error.icmp_from == "10.251.1.1"
    assert (error.src, error.dst, error.seq) == (("10.251.1.2", 40000), ("10.251.9.9", 80), 77)


def test_wire_numbers_from_each_isn_scales_the_window_and_marks_retransmissions():
    from reactor.tools.lab.wire import Numbering, parse

    a, b = ("10.0.0.1", 40000), ("10.0.0.2", 80)
    n = Numbering()

    def seg(src, dst, seq, ack, bits, window=100, options=b"", payload=b""):
        way = 0 if src == a else 1
        return n.number(parse(ipv4_tcp(*src[:1], *dst[:1], src[1], dst[1], seq, ack, bits, window=window,
                                       options=options, payload=payload)), way)

    wscale3 = b"\x03\x03\x03"
    isn = 2**32 - 300  # the client's numbers wrap past 2**32 within its first write
    assert seg(a, b, isn, 0, SYN, options=wscale3) == (0, None, 100, False)
    assert seg(b, a, 17, isn + 1, SYN | ACK, options=wscale3) == (0, 1, 100, False)
    assert seg(a, b, isn + 1, 18, ACK, window=10) == (1, 1, 80, False), "the window, scaled: 10 << 3"
    assert seg(a, b, isn + 1, 18, PSH | ACK, payload=b"x" * 1000)[3] is False
    assert seg(a, b, isn + 1, 18, PSH | ACK, payload=b"x" * 1000)[3] is True, "the same bytes again"
    assert seg(a, b, (isn + 1001) % 2**32, 18, FIN | ACK) == (1001, 1, 800, False), "relative numbers wrap too"


def test_the_tap_keeps_only_its_ports_sees_loopback_once_and_times_the_segments_inside_the_call():
    from reactor.tools.lab.wire import Capture, CaptureUnavailable

    try:
        tap = Capture([], interface="lo")
    except CaptureUnavailable as exc:
        pytest.skip(str(exc))
    ours, theirs = socket.socket(), socket.socket()
    with tap, ours, theirs:
        for sock in (ours, theirs):
            sock.bind(("127.0.0.1", 0))
            sock.listen(8)
        port = ours.getsockname()[1]
        tap.add_ports(port)
        for _ in range(20):  # another program's traffic: the kernel never queues it for us
            with socket.create_connection(theirs.getsockname(), timeout=5):
                theirs.accept()[0].close()
        client = socket.socket()
        client.setblocking(False)
        with client:
            began = time.monotonic()
            client.connect_ex(ours.getsockname())
            returned = time.monotonic()
            ours.accept()[0].close()
        deadline = time.monotonic() + 5
        packets = []
        while len(packets) < 3 and time.monotonic() < deadline:
            packets += tap.read()
            time.sleep(0.01)
        queued, dropped = tap.stats()
    handshake = [p for p in packets if p.flags & (SYN | ACK) and not p.flags & (FIN | RST)][:3]
    assert [p.flags & (SYN | ACK) for p in handshake] == [SYN, SYN | ACK, ACK], "each segment once, not twice"
    assert all(p.outgoing for p in handshake), "loopback: the copy its sender transmitted"
    assert all(port in (p.src[1], p.dst[1]) for p in packets)
    assert queued == len(packets) and dropped == 0, "the filter, in the kernel, let nothing else in"
    assert began < handshake[0].time < handshake[-1].time < returned, "loopback runs the handshake inside connect()"


# --------------------------------------------------------------- the script

def segs(*specs: tuple[str, str, float]) -> list[Segment]:
    """Segments of one connection "cli": (way, flags, t); "+data" in flags: 5 bytes."""
    out = []
    for way, text, t in specs:
        out.append(Segment(t=t, conn="cli", way=way, flags=text.replace("+data", ""), seq=0, ack=None, win=0,
                           length=5 if "+data" in text else 0))
    return out


def verdict(script, segments, steps=()):
    from reactor.tools.lab.expect import check
    from reactor.tools.lab.session import WireCapture

    return check(script, WireCapture("lo", segments), list(steps))


def close_step(call: str, began: float, returned: float) -> Step:
    return Step(t=returned, side="client", call=call, result="ok", errno=None, sockets=[], began=began,
                returned=returned)


CLOSE_STEPS = [close_step("cli: close()", 0.9, 1.1), close_step("srv: close()", 1.9, 2.1)]
SHAKE = [(TO_SERVER, "SYN", 0.1), (TO_CLIENT, "SYN/ACK", 0.2), (TO_SERVER, "ACK", 0.3)]


def test_the_close_script_takes_the_ack_alone_or_on_the_fin_and_nothing_else():
    script = SCENARIOS["close"].script
    three = segs(*SHAKE, (TO_SERVER, "FIN/ACK", 1.0), (TO_CLIENT, "FIN/ACK", 2.0), (TO_SERVER, "ACK", 2.05))
    four = segs(*SHAKE, (TO_SERVER, "FIN/ACK", 1.0), (TO_CLIENT, "ACK", 1.5), (TO_CLIENT, "FIN/ACK", 2.0),
                (TO_SERVER, "ACK", 2.05))
    assert verdict(script, three, CLOSE_STEPS).status == "matched"
    matched = verdict(script, four, CLOSE_STEPS)
    assert matched.status == "matched" and matched.counts == [1, 1, 1, 1, 1, 1, 1]
    # a RST where the FIN should be: the verdict says where and why
    reset = segs(*SHAKE, (TO_SERVER, "RST/ACK", 1.0))
    bad = verdict(script, reset, CLOSE_STEPS)
    assert bad.status == "differed"
    assert bad.problems == ["cli: segment 4: the wire has `→ RST/ACK seq 0 win 0`, the script `→ FIN/ACK after "
                            "`cli: close`` (other flags)"]
    # the last ACK never came; a fifth segment nobody expected; the FIN before close() was called
    assert "the capture has ended" in verdict(script, three[:-1], CLOSE_STEPS).problems[0]
    extra = three + segs((TO_CLIENT, "RST", 2.1))
    assert "the script has ended" in verdict(script, extra, CLOSE_STEPS).problems[0]
    early = segs(*SHAKE, (TO_SERVER, "FIN/ACK", 0.5), (TO_CLIENT, "FIN/ACK", 2.0), (TO_SERVER, "ACK", 2.05))
    assert "comes before `cli: close` began" in verdict(script, early, CLOSE_STEPS).problems[0]
    # a connection the script does not name may send nothing
    stray = three + [Segment(t=3, conn="other", way=TO_SERVER, flags="SYN", seq=0, ack=None, win=0, length=0)]
    assert verdict(script, stray, CLOSE_STEPS).problems == ["other: 1 segments, where the script has none"]


def test_a_script_times_retransmissions_and_counts_them():
    from reactor.tools.lab.expect import Script, to_server

    script = Script("", {"cli": (to_server("SYN", retransmission=False),
                                 to_server("SYN", times=(1, None), retransmission=True, gap=(0.9, 1.6)))})

    def syns(*times: float) -> list[Segment]:
        out = segs(*[(TO_SERVER, "SYN", t) for t in times])
        for segment in out[1:]:
            segment.retransmission = True
        return out

    assert verdict(script, syns(0.0, 1.0, 2.0)).counts == [1, 2]
    assert "0.300 s after the last one" in verdict(script, syns(0.0, 0.3)).problems[0], "too soon for the timer"
    assert "the capture has ended" in verdict(script, syns(0.0)).problems[0], "never resent"


def test_a_kernel_that_parts_from_the_script_fails_the_lab(monkeypatch, tmp_path):
    import dataclasses

    from reactor.tools.lab import runner
    from reactor.tools.lab.expect import Script, to_client, to_server

    wrong = Script("a SYN to a closed port is answered with SYN/ACK", {"cli": (to_server("SYN"), to_client("SYN/ACK"))})
    monkeypatch.setitem(runner.SCENARIOS, "refused", dataclasses.replace(SCENARIOS["refused"], script=wrong))
    out = io.StringIO()
    path = tmp_path / "lab.json"
    code = runner.run_lab(["refused"], BACKENDS, out, json_path=str(path))
    scenario = json.loads(path.read_text())["scenarios"][0]
    if scenario["wire"]["status"] == "not captured":
        pytest.skip(scenario["wire"]["reason"])
    assert code == 1 and scenario["status"] == "ok", "the calls went as ever: only the wire parted"
    assert scenario["wire"]["status"] == "differed"
    assert "the wire has `← RST/ACK seq 0 ack 1 win 0`" in scenario["wire"]["problems"][0]
    assert "wire: 1 differed" in out.getvalue().splitlines()[-1]
    assert code == 0 or "DIFFERED" in out.getvalue()


# ------------------------------------------------------------------ the ladder

def drawn(name: str):
    pytest.importorskip("matplotlib")
    from reactor.tools.lab.ladder import ladder

    o = outcome(name)
    fig = ladder(o)
    artists = {a.get_gid(): a for a in fig.findobj() if a.get_gid()}
    return o, fig, artists


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_ladder_has_an_arrow_per_segment_and_each_call_on_its_side(name):
    from reactor.tools.lab.ladder import CLIENT_X, SERVER_X

    o, _fig, artists = drawn(name)
    assert artists["title"].get_text().startswith(f"{name}: ")
    segments = o.wire.segments if o.wire is not None else []
    tops = []
    for i, segment in enumerate(segments):
        arrow = artists[f"segment-{i}"]
        (x0, y0), (x1, y1) = arrow._posA_posB  # where it was drawn from and to
        assert (x0, x1) == ((CLIENT_X, SERVER_X) if segment.way == TO_SERVER else (SERVER_X, CLIENT_X))
        assert y1 > y0, "time runs down"
        assert (arrow.get_linestyle() == "--") == segment.retransmission
        label = artists[f"segment-label-{i}"].get_text()
        assert segment.flags in label and (segment.flags.startswith("ICMP") or f"seq {segment.seq}" in label)
        tops.append(y0)
    assert tops == sorted(tops), "the arrows are in the order the kernel sent them"
    assert not any(gid.startswith("segment-") and gid.split("-")[-1].isdigit() and int(gid.split("-")[-1]) >=
                   len(segments) for gid in artists), "one arrow per segment, no more"
    for i, step in enumerate(o.steps):
        text = artists[f"call-{i}" if step.side in ("client", "server") else f"note-{i}"]
        x, _ = text.get_position()
        if step.side == "client":
            assert x < CLIENT_X and text.get_ha() == "right"
        elif step.side == "server":
            assert x > SERVER_X and text.get_ha() == "left"
        assert text.get_text().startswith(step.call[:20].rstrip() if step.side in ("client", "server") else "[")


def test_the_handshake_ladder_shows_connect_returning_after_the_segments_and_the_states():
    o, _fig, artists = drawn("handshake")
    if o.wire is None or o.wire.status == "not captured":
        pytest.skip("no packet tap here")
    y = {gid: a.get_position()[1] for gid, a in artists.items()
         if gid.startswith(("call-", "state-")) and not gid.startswith("call-span")}
    connect = o.steps.index(o.step("cli: connect"))
    accept = o.steps.index(o.step("lsn: accept"))
    ack = artists["segment-2"]._posA_posB[0][1]
    assert artists["segment-label-2"].get_text().startswith("cli: ACK seq 1 ack 1")
    assert ack < y[f"call-{connect}"] < y[f"call-{accept}"], "ACK, then connect() returns, then accept()"
    assert f"call-span-{connect}" in artists, "the bar: the handshake happened inside connect()"
    states = " ".join(a.get_text() for gid, a in artists.items() if gid.startswith("state-"))
    assert "cli ESTABLISHED" in states and "lsn LISTEN" in states and "srv ESTABLISHED" in states
    assert all(artists[gid].get_position()[0] < 0.5 for gid in artists if gid.startswith("state-client"))


def test_the_lab_page_lists_every_scenario_with_what_its_wire_must_be():
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs"
    page = (docs / "lab.md").read_text()
    section = page.split("## The scenarios", 1)[1].split("\n## ", 1)[0]
    for scenario in SCENARIOS.values():
        row = next((line for line in section.splitlines() if line.startswith(f"| `{scenario.name}`")), None)
        assert row is not None, f"docs/lab.md: no row for {scenario.name}"
        assert scenario.script.checks in row and scenario.shows in row, f"docs/lab.md: {scenario.name}'s row is stale"
    image = docs / re.search(r"!\[[^\]]*\]\(([^)]+)\)", page).group(1)
    assert image.read_text().startswith("<?xml") and 'id="segment-0"' in image.read_text()
