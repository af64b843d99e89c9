"""The DHCP failover drill: stop the primary DHCP server (dhcpd or kea-dhcp4) the way its pair is
meant to be taken apart (dhcpd's stop tells its partner; Kea's secondary is told by whoever
stops the primary); a client the primary served gets a new lease from the secondary (timed);
start the primary again; both back to their normal failover state (timed); no address bound to
two MACs in the servers' leases read along the way."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

from lab.drills.access import LabAccess, Runtime
from lab.drills.probes import INTERVAL
from lab.drills.report import DhcpReport
from lab.drills.series import DhcpSeries
from lab.drills.watch import Timeline
from lab.host.wait import until


def run(runtime: Runtime, deadline: float = 30, progress: Callable[[str], None] = lambda m: None
        ) -> DhcpReport:
    access = LabAccess(runtime)
    access.require_initial_state()
    return _trial(access, deadline, progress)


def repeat(runtime: Runtime, trials: int = 1, deadline: float = 30,
           progress: Callable[[str], None] = lambda m: None) -> DhcpSeries:
    """`trials` DHCP drills back to back, each from the initial state (read before each)."""
    access = LabAccess(runtime)
    done, stopped = access.back_to_back(
        trials, deadline + 30, lambda: _trial(access, deadline, lambda m: None), trial_line, progress)
    return DhcpSeries.of(done, trials, stopped, lab=access.lab.name)


def trial_line(r: DhcpReport) -> str:
    lease = "no lease" if r.lease_s is None else f"new lease in {r.lease_s:.2f} s"
    return f"{'PASS' if r.ok else 'FAIL'}; {lease}" + "".join(f"\n    problem: {p}" for p in r.problems)


def _trial(access: LabAccess, deadline: float, progress: Callable[[str], None]) -> DhcpReport:
    lab = access.lab
    servers = lab.dhcp_servers()
    primary, secondary = servers["primary"], servers["secondary"]
    clients = [c for t in lab.tenants.values() for c in t.clients]
    served = {c: access.lease_server(c) for c in clients}
    by_primary = [c for c, s in served.items() if s == str(primary.ipv4.ip)]
    # Kea: a client of the primary's scope whose last lease came from the secondary (an
    # earlier trial's) is the primary's again once both run
    scoped = [] if by_primary else [c for c in clients if access.in_primary_scope(c)]
    client = (by_primary or scoped or clients)[0]
    timeline = Timeline(time.time(), progress)
    mark = timeline.mark
    report = DhcpReport(lab=lab.name, client=client, served_by_before=served[client],
                        events=timeline.events)
    problems = report.problems

    whose = ("the primary" if by_primary else "the primary's scope" if scoped
             else "no client was served by the primary")
    mark(f"{client} holds a lease from {served[client]} ({whose})", client)
    dhcpd = access.dhcpd(primary.name)
    kea = lab.dhcp.server == "kea"
    mark(f"stop {dhcpd.name} on {primary.name} (primary)", primary.name)
    access.node(primary.name).stop(dhcpd)
    if kea:  # dhcpd's stop tells its partner; Kea's partner is told by the one who stops it
        mark(f"{secondary.name} is told: ha-maintenance-start", secondary.name)
        if refused := access.dhcp_take_over(secondary.name):
            problems.append(f"{secondary.name} did not take over: {refused}")
    asked = mark(f"{client} drops its lease and asks for a new one", client)
    access.new_lease(client)
    if _leased(access, client, deadline):
        addr = access.client_state(client).ipv4
        report.lease_s = round(mark(f"{client} has a lease: {addr}", client) - asked, 2)
        until(lambda: access.lease_server(client) is not None, 5, INTERVAL, paced=True)
        by = access.lease_server(client)
        mark(f"... given by {by}", client)
        if by != str(secondary.ipv4.ip):
            problems.append(f"{client}'s new lease came from {by}, "
                            f"expected the secondary {secondary.ipv4.ip}")
    else:
        problems.append(f"{client} got no lease within {deadline:.0f} s with the primary stopped")
    views = {f"{secondary.name} (primary stopped)": access.leases(secondary.name)}
    if kea and not access.dhcp_partner_down(secondary.name):
        problems.append(f"{secondary.name} did not take {primary.name} for down (partner-down)")
    started = mark(f"start {dhcpd.name} on {primary.name}", primary.name)
    access.node(primary.name).start(dhcpd)
    normal = access.dhcp_normal_state()
    if until(lambda: not access.problems(), deadline + 30, INTERVAL, paced=True):
        report.restored_s = round(mark(f"both DHCP servers back to failover state {normal}; "
                                       "the lab is in its initial state", "host") - started, 2)
    else:
        problems.append("not back to the initial state: " + "; ".join(access.problems()))
    views |= {s.name: access.leases(s.name) for s in (primary, secondary)}
    bound = double_bound(views)
    problems += bound
    counts = ", ".join(f"{k}: {'unread' if v is None else len(v)}" for k, v in views.items())
    mark(f"leases compared ({counts}): "
         + ("an address bound to two MACs" if bound else "no address bound to two MACs"), "host")
    report.ok = not problems
    return report


def double_bound(views: dict[str, dict[str, str] | None]) -> list[str]:
    """Addresses that the servers' leases (where: address -> MAC) bind to more than one MAC,
    and the leases that could not be read."""
    macs: dict[str, dict[str, list[str]]] = {}
    out = []
    for where, leases in views.items():
        if leases is None:
            out.append(f"the leases of {where} could not be read")
            continue
        for addr, mac in leases.items():
            macs.setdefault(addr, {}).setdefault(mac.lower(), []).append(where)
    for addr, by in sorted(macs.items()):
        if len(by) > 1:
            out.append(f"{addr} is bound to {len(by)} MACs: "
                       + "; ".join(f"{m} ({', '.join(w)})" for m, w in by.items()))
    return out


def _leased(access: LabAccess, client: str, deadline: float) -> bool:
    """The client holds an address of the lab's DHCP range within the deadline."""
    r = access.lab.dhcp.range

    def leased() -> bool:
        ipv4 = access.client_state(client).ipv4
        return ipv4 is not None and r.first <= ipaddress.ip_address(ipv4) <= r.last

    return until(leased, deadline, INTERVAL, paced=True)
