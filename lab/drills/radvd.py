"""The radvd drill: radvd crashes on the drilled tenant (SIGKILL) and is started again (on the
VRRP master, the one whose router advertisements come from the v6 VIP; on the backup, the
gateway must stay). SLAAC clients must keep their address and their default route via the v6
VIP throughout (the route outlives a few missed advertisements), and lose no more IPv6 probes
than a lab without a fault does. Each client's kernel records every change of its IPv6
addresses and routes (`ip monitor`): a removal lasting a moment is seen too.

A crash, not a stop: radvd 2.19 withdraws its route on a graceful stop (a last advertisement
with router lifetime 0), and has no option against it."""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime

from lab.drills.access import DrillError
from lab.drills.modes import Mode, register
from lab.drills.probes import Background
from lab.drills.report import GatewayReport
from lab.pool import pmap

NOISE = 2  # lost probes in a row that are no outage: one or two may cross any moment
MONITOR_LINE = re.compile(r"^\[(\S+)\] Deleted (.*)$")


@register
class Radvd(Mode):
    name = "radvd"
    help = "kill its radvd and start it again: the SLAAC clients keep their address and IPv6 route"
    moves_gateway = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.radvd = self.access.tenant_service(self.tenant, "radvd")
        self.clients = [c for t in self.lab.tenants.values() for c in t.clients]
        self.vip6 = str(self.lab.vrrp.instances.ipv6.vip.ip)
        self.monitors = {c: Background(self.access.node(c), "monitor6",
                                       ("ip", "-6", "-ts", "monitor", "address", "route"))
                         for c in self.clients}

    @property
    def what(self) -> str:
        return f"radvd on {self.vm} is killed (SIGKILL), then started again"

    def inject(self) -> None:
        pid = (self.node.read(self.access.radvd_pidfile()) or "").strip()
        if not pid:
            raise DrillError(f"{self.vm}: radvd is not running")
        self.node.run(["kill", "-KILL", pid], check=False)

    def restore(self) -> None:
        self.node.start(self.radvd)

    def background(self) -> list[Background]:
        return list(self.monitors.values())

    def observe(self) -> list[str]:
        def wrong(c: str) -> str | None:
            s = self.access.client_state(c)
            if s.slaac is None:
                return f"{c}: no SLAAC address in {self.lab.shared_vlan.ipv6}"
            if s.gateway6 != self.vip6:
                return f"{c}: IPv6 default via {s.gateway6}, not the v6 VIP {self.vip6}"
            return None

        return [w for w in pmap(wrong, self.clients) if w]

    def judge(self, report: GatewayReport, t0: float) -> list[str]:
        lost = [f"{o.container} IPv6: {o.lost} probes lost from {o.start:.2f} s "
                f"({'never answered again' if o.open else f'{o.ms} ms'})"
                for o in report.outages if o.family == "6" and o.lost > NOISE]
        texts = dict(zip(self.monitors, pmap(Background.output, self.monitors.values()), strict=True))
        return lost + [f"{c}: {what} (at {t:.2f} s)" for c, text in texts.items()
                       for t, what in removals(text, t0, self.lab.shared_vlan.ipv6, self.vip6)]



def removals(text: str, t0: float, prefix, vip6: str) -> list[tuple[float, str]]:
    """A client's addresses in `prefix` or default route via `vip6` removed, from its
    `ip -ts monitor` lines (seconds since t0, on the client's clock)."""
    out = []
    for m in map(MONITOR_LINE.match, text.splitlines()):
        if not m:
            continue
        what = m.group(2)
        addr = re.search(r"inet6 (\S+)/\d+", what)
        route = what.startswith(f"default via {vip6} ")
        if route or (addr and ipaddress.ip_address(addr.group(1)) in prefix):
            t = round(datetime.fromisoformat(m.group(1)).timestamp() - t0, 3)
            out.append((t, "default route via the v6 VIP removed" if route
                        else f"SLAAC address {addr.group(1)} removed"))
    return out
