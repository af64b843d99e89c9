"""The drills' probers: ping's own output (-D timestamps, -O for unanswered probes) read into
one (send time, replied) per probe, and the outages in it; where the output is kept."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from lab.drills import Outage, outages, parse_ping
from lab.drills.probes import Background
from lab.host.wait import until
from lab.substrate.base import Result

T0 = 1000.0


def reply(ts: float, seq: int, ms: float = 10.0) -> str:
    return f"[{ts:.6f}] 64 bytes from 9.9.9.9: icmp_seq={seq} ttl=62 time={ms} ms"


def no_answer(ts: float, seq: int) -> str:
    return f"[{ts:.6f}] no answer yet for icmp_seq={seq}"


def ping_output(lines: list[str]) -> str:
    return "\n".join(["PING 9.9.9.9 (9.9.9.9) 56(84) bytes of data.", *lines,
                      "", "--- 9.9.9.9 ping statistics ---", "9 packets transmitted, 7 received"])


def test_every_probe_once_with_its_send_time_on_the_probers_clock():
    lines = [reply(T0 + 0.01, 1), reply(T0 + 0.21, 2),
             no_answer(T0 + 0.6, 3), no_answer(T0 + 0.8, 4),  # lost: printed as the next leaves
             reply(T0 + 0.81, 5)]
    lines += [reply(T0 + 0.01 + 0.2 * (seq - 1), seq) for seq in range(6, 20)]
    series = parse_ping(ping_output(lines), T0, interval=0.2)
    assert [ok for _, ok in series[:5]] == [True, True, False, False, True]
    assert [t for t, _ in series[:5]] == [0.0, 0.2, 0.4, 0.6, 0.8]
    # the last second of the prober's output is left out: no reply could come any more
    assert max(t for t, _ in series) <= 0.01 + 0.2 * 18 - 1.0


def test_a_late_reply_counts_as_a_reply():
    lines = [reply(T0, 1), no_answer(T0 + 0.2, 2), reply(T0 + 0.35, 2, ms=350.0)]
    lines += [reply(T0 + 0.2 * (seq - 1), seq) for seq in range(3, 12)]
    assert all(ok for _, ok in parse_ping(ping_output(lines), T0, interval=0.2))


def test_probes_stopped_before_their_replies_are_not_losses_whatever_the_hosts_clock():
    # the prober's clock runs 5 s behind the host's: its last probes are still left out
    lines = [reply(T0 - 5 + 0.2 * i, i + 1) for i in range(20)] + [no_answer(T0 - 5 + 4.0, 20)]
    series = parse_ping(ping_output(lines), T0, interval=0.2)
    assert series and all(ok for _, ok in series)
    assert outages(series, restore_t=float("inf")) == []


def test_an_outage_that_lasts_to_the_end_is_reported():
    lines = [reply(T0 + 0.2 * i, i + 1) for i in range(10)]
    lines += [no_answer(T0 + 0.2 * i, i) for i in range(11, 40)]
    series = parse_ping(ping_output(lines), T0, interval=0.2)
    (o,) = outages(series, restore_t=float("inf"))
    assert o.end is None and o.ms is None and o.lost >= 20 and o.phase == "failover"


def test_outages_are_runs_of_lost_probes_split_by_the_restore():
    series = [(0.0, True), (0.2, False), (0.4, False), (0.6, True), (5.0, True), (5.2, False), (5.4, True)]
    first, second = outages(series, restore_t=3.0)
    assert first == Outage(start=0.2, end=0.6, ms=400, lost=2, phase="failover")
    assert second == Outage(start=5.2, end=5.4, ms=200, lost=1, phase="failback")


def test_nothing_recorded_is_an_empty_series():
    assert parse_ping("PING 9.9.9.9 (9.9.9.9) 56(84) bytes of data.\n", T0) == []


def test_the_radvd_drill_reads_removals_from_the_clients_kernel():
    import ipaddress
    from datetime import datetime

    from lab.drills.radvd import removals

    t0 = datetime.fromisoformat("2025-01-01T10:00:00").timestamp()
    text = "\n".join([
        "[2025-01-01T10:00:02.500000] Deleted default via fe80:7::de dev eth0 proto ra metric 1024",
        "[2025-01-01T10:00:02.550000] default via fe80:7::de dev eth0 proto ra metric 1024 pref medium",
        "[2025-01-01T10:00:03.000000] Deleted 5: eth0    inet6 2001:db8:7::5/64 scope global dynamic",
        "[2025-01-01T10:00:04.000000] Deleted 5: eth0    inet6 fe80::1/64 scope link",
        "[2025-01-01T10:00:05.000000] Deleted default via fe80::99 dev eth0 proto ra metric 1024"])
    assert removals(text, t0, ipaddress.ip_network("2001:db8:7::/64"), "fe80:7::de") == [
        (2.5, "default route via the v6 VIP removed"), (3.0, "SLAAC address 2001:db8:7::5 removed")]


@dataclass
class LocalNode:
    """A node whose files live under `root` on this machine and whose commands run here."""

    name: str
    root: str

    def path(self, p: str) -> str:
        return self.root + p

    def run(self, argv, *, input=None, check=True, timeout=60) -> Result:
        p = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout)
        assert p.returncode == 0 or not check, p.stderr
        return Result(tuple(argv), p.returncode, p.stdout, p.stderr)

    def read(self, path: str) -> str | None:
        f = Path(self.root + path)
        return f.read_text() if f.exists() else None


def test_a_probers_output_goes_to_a_new_file_nobody_could_plant(tmp_path):
    """The drills ran ping as root with its output in /tmp/vxlab-drill-<name>: a symlink
    planted there by any user of the node would have been followed (issue 14, item 10)."""
    node = LocalNode("blueC0", str(tmp_path))
    (tmp_path / "tmp").mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "tmp/vxlab-drill-ping4").symlink_to(victim)
    probers = [Background(node, "ping4", ("sh", "-c", "echo reply")) for _ in range(2)]
    for b in probers:
        b.start()
    for b in probers:
        assert until(lambda b=b: b.output() == "reply\n", 5), b.path
    assert victim.read_text() == "precious\n"
    paths = {b.path for b in probers}
    assert len(paths) == 2 and all(p.startswith("/tmp/vxlab-drill-ping4.") for p in paths)
    assert all((tmp_path / p.lstrip("/")).stat().st_mode & 0o777 == 0o600 for p in paths)
    for b in probers:
        b.remove()
    assert not any((tmp_path / p.lstrip("/")).exists() for p in paths)
