"""The drills' probers: commands left running on the lab's nodes (ping, a TCP stream), and
reading ping's own output into probes and outages, on each prober's own clock."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lab.drills.report import Outage, Probe, Series
from lab.substrate.base import Node

INTERVAL = 0.05      # probe interval (s); a substrate may ask for more (`probe_interval`)
TCP_PORT = 5001      # the TCP sink in the lab's Internet


@dataclass
class Background:
    """A command left running on a node, its output in a file of that node."""

    node: Node
    name: str
    argv: tuple[str, ...]
    pid: str = ""
    # INT lets ping print its summary; a shell started in the background ignores INT, so a
    # script needs TERM.
    signal: str = "INT"
    path: str = ""  # its output on the node: a new file that mktemp made there

    def start(self) -> None:
        # Not a fixed name: in a world-writable /tmp, another user could have planted it (a
        # symlink that root's redirection would follow).
        cmd = " ".join(_quote(a) for a in self.argv)
        script = ('mkdir -p "$1" && out=$(mktemp "$1/vxlab-drill-$2.XXXXXXXX") && '
                  f'{{ setsid {cmd} > "$out" 2>&1 < /dev/null & }} && echo "$! $out"')
        r = self.node.run(["sh", "-c", script, "start", self.node.path("/tmp"), self.name])
        self.pid, out = r.out.split()
        self.path = out.removeprefix(self.node.root)

    def stop(self) -> None:
        if self.pid:
            self.node.run(["kill", f"-{self.signal}", self.pid], check=False)

    def output(self) -> str:
        return (self.node.read(self.path) or "") if self.path else ""

    def remove(self) -> None:
        if self.path:
            self.node.run(["rm", "-f", self.node.path(self.path)], check=False)


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def pinger(node: Node, target: str, family: str, interval: float = INTERVAL) -> Background:
    # -D: the prober's own timestamps; -O: report each unanswered probe
    return Background(node, f"ping{family}", ("ping", f"-{family}", "-n", "-D", "-O", "-i", str(interval),
                                              "-W", "1", target))


def tcp_stream(node: Node, target: str, interval: float = INTERVAL) -> Background:
    """A line every `interval` over one TCP connection (bash's /dev/tcp: no extra tool in the image);
    it ends, saying so, on the first write error (a reset). Builtins only, no process per
    line (forks cost dearly in an emulated VM): the pause is a read on the socket, which the
    sink never writes to, the time is $EPOCHREALTIME."""
    script = (f"exec 3<>/dev/tcp/{target}/{TCP_PORT} || {{ echo CONNECT-FAILED; exit 1; }}; "
              f"while :; do read -r -t {interval} -u 3 _; "
              f"echo \"$EPOCHREALTIME\" >&3 || {{ echo RESET; exit 1; }}; done")
    return Background(node, "tcp", ("bash", "-c", script), signal="TERM")


PING_LINE = re.compile(r"^\[(\d+\.\d+)\] (?:\d+ bytes from .*icmp_seq=(\d+) .*time=([\d.]+) ms"
                       r"|no answer yet for icmp_seq=(\d+))")


def parse_ping(text: str, t0: float, interval: float = INTERVAL, grace: float = 1.0) -> Series:
    """Every probe once, its send time since t0 on the prober's clock. Probes sent in the
    last `grace` seconds of the prober's output are left out: it was stopped before their
    replies could come. Measured on the prober's own clock: an emulated VM's drifts from the
    host's by more than that."""
    sent: dict[int, float] = {}
    replied: set[int] = set()
    end = 0.0
    for m in map(PING_LINE.match, text.splitlines()):
        if not m:
            continue
        ts = float(m.group(1))
        end = max(end, ts)
        if m.group(2):
            seq = int(m.group(2))
            sent[seq] = ts - float(m.group(3)) / 1000
            replied.add(seq)
        else:  # printed as the next probe leaves: this one left an interval earlier
            seq = int(m.group(4))
            sent.setdefault(seq, ts - interval)
    if not sent:
        return []
    first, last = min(sent), max(sent)
    known = sorted(sent)
    out = []
    for seq in range(first, last + 1):
        if seq not in sent:  # interpolate between neighbours
            before = max(s for s in known if s < seq)
            sent[seq] = sent[before] + (seq - before) * interval
        if sent[seq] <= end - grace:
            out.append(Probe(round(sent[seq] - t0, 3), seq in replied))
    return out


def outages(series: Series, restore_t: float, container: str = "", family: str = "") -> list[Outage]:
    """Runs of lost probes: from the first lost one's departure to the next answered one's."""
    out, run = [], []

    def phase(t: float) -> str:
        return "failover" if t < restore_t else "failback"

    for t, ok in series:
        if not ok:
            run.append(t)
            continue
        if run:
            out.append(Outage(container=container, family=family, start=run[0], end=t,
                              ms=round((t - run[0]) * 1000), lost=len(run), phase=phase(run[0])))
            run = []
    if run:  # never came back
        out.append(Outage(container=container, family=family, start=run[0], end=None, ms=None,
                          lost=len(run), phase=phase(run[0])))
    return out
