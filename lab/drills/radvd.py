"""The radvd drill: radvd restarted on the drilled tenant (on the VRRP master, the one whose
router advertisements come from the v6 VIP; on the backup, the gateway must stay). SLAAC
clients must keep their address and their default route via the v6 VIP throughout, and lose
no more IPv6 probes than a lab without a fault does."""

from __future__ import annotations

from lab.drills.modes import Mode, register
from lab.drills.report import GatewayReport
from lab.pool import pmap

NOISE = 2  # lost probes in a row that are no outage: one or two may cross any moment


@register
class Radvd(Mode):
    name = "radvd"
    help = "restart its radvd: the SLAAC clients keep their address and IPv6 route"
    moves_gateway = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.radvd = self.access.tenant_service(self.tenant, "radvd")
        self.clients = [c for t in self.lab.tenants.values() for c in t.clients]
        self.vip6 = str(self.lab.vrrp.instances.ipv6.vip.ip)

    @property
    def what(self) -> str:
        return f"radvd on {self.vm} is restarted"

    def inject(self) -> None:
        self.node.start(self.radvd, restart=True)

    def restore(self) -> None:
        self.node.start(self.radvd)  # runs already, unless the restart failed

    def observe(self) -> list[str]:
        def wrong(c: str) -> str | None:
            s = self.access.client_state(c)
            if s.slaac is None:
                return f"{c}: no SLAAC address in {self.lab.shared_vlan.ipv6}"
            if s.gateway6 != self.vip6:
                return f"{c}: IPv6 default via {s.gateway6}, not the v6 VIP {self.vip6}"
            return None

        return [w for w in pmap(wrong, self.clients) if w]

    def judge(self, report: GatewayReport) -> list[str]:
        return [f"{o.container} IPv6: {o.lost} probes lost from {o.start:.2f} s "
                f"({'never answered again' if o.open else f'{o.ms} ms'})"
                for o in report.outages if o.family == "6" and o.lost > NOISE]
