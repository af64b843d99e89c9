"""blueVM, greenVM: the shared VLAN's switch and VXLAN (interfaces file), radvd and keepalived
(VRRPv3 for the VIPs), and where keepalived says which state it is in."""

from __future__ import annotations

import re
from collections.abc import Callable

from lab.facts import Fact, Nic, dead, nic, read
from lab.host.wait import until
from lab.model import Lab
from lab.roles.common import ifupdown, place, service, sysctl
from lab.roles.target import Target
from lab.substrate.base import Node, Service

TEMPLATES = ("tenant", "vm")
RADVD = "/etc/radvd.conf"
KEEPALIVED = "/etc/keepalived/keepalived.conf"
SCRIPTS = ("/usr/local/bin/keepalived_check_ipv4.sh", "/usr/local/bin/keepalived_check_ipv6.sh",
           "/usr/local/bin/keepalived_notify.sh", "/usr/local/bin/keepalived_notify_fifo.sh")
RELEASE = "/usr/local/bin/keepalived_release_vips.sh"  # run once keepalived has exited, killed too
STATUS = "/var/run/keepalived_status"  # the seed's notify script: the last transition
TRANSITIONS = "/var/run/keepalived_transitions"  # vxlab's notify line: every one, timestamped
# The fast profile's (lab/deployment.py): rendered for it only, one instance per family
PROBER = "/usr/local/bin/vxlab_uplink_prober.sh"
PROBER_UNIT = "/etc/systemd/system/vxlab-uplink-prober@.service"
UPSTREAM_WAIT = 10  # s: then keepalived starts anyway (and its checks say what fails)
DAEMONS = {"keepalived": "/run/keepalived.pid", "radvd": "/run/radvd.pid"}  # their main pid files
PROBERS = {f"uplink-prober-{fam}": f"/run/vxlab_uplink_prober_{fam}.pid" for fam in ("ipv4", "ipv6")}
# keepalived's own three processes: the parent, its VRRP child, its checkers child
KEEPALIVED_PIDS = {k: f"/run/{k}.pid" for k in ("keepalived", "keepalived_vrrp", "keepalived_checkers")}


def services(t: Target) -> tuple[Service, ...]:
    """radvd, keepalived, and with the fast profile its uplink probers (started first: they
    write the files keepalived tracks)."""
    p = t.path
    probers = tuple(Service(f"uplink-prober-{fam}", ("bash", p(PROBER), fam),
                            unit=f"vxlab-uplink-prober@{fam}") for fam in ("ipv4", "ipv6")
                    if PROBER in t.files)
    # Reloaded, not restarted, when radvd.conf changes: radvd's stop sends a last RA with
    # router lifetime 0, which takes every client's default route away until the next RA.
    radvd = Service("radvd", ("radvd", "--nodaemon", "--logmethod", "stderr", "--config", p(RADVD),
                              "--pidfile", p(DAEMONS["radvd"])), unit="radvd",
                    pidfiles=(p(DAEMONS["radvd"]),),
                    reload=("sh", "-c", 'kill -HUP "$(cat "$1")"', "reload", p(DAEMONS["radvd"])))
    pids = {k: p(f) for k, f in KEEPALIVED_PIDS.items()}
    keepalived = Service("keepalived", (
        "keepalived", "--dont-fork", "--log-console", "--log-detail", "--vrrp",
        "--use-file", p(KEEPALIVED), "--pid", pids["keepalived"],
        "--vrrp_pid", pids["keepalived_vrrp"], "--checkers_pid", pids["keepalived_checkers"],
        "--config-id", t.spec.name), unit="keepalived", pidfiles=tuple(pids.values()),
        after_exit=(p(RELEASE),))
    return (*probers, radvd, keepalived)


def apply(t: Target) -> None:
    changed = place(t)
    sysctl(t)
    ifupdown(t)
    *probers, radvd, keepalived = services(t)
    for prober in probers:
        service(t, prober, PROBER in changed)
    service(t, radvd, RADVD in changed)
    if not t.node.running(keepalived):
        # keepalived's first check must reach the Internet through the router: one that
        # fails costs `rise` more checks (3 s) before VRRP even starts its master-down wait
        t.upstream_ready()
        # Its VXLAN traffic asked for the router's address before the router had it: the
        # failed lookup would hold the first check's ping until its next retry (up to 1 s).
        for fam in ("-4", "-6"):
            t.node.run(["ip", fam, "neigh", "flush", "nud", "incomplete"], check=False)
        checks = [t.path(s) for s in SCRIPTS if "_check_" in s and s in t.files]  # the seed profile's
        until(lambda: all(t.node.run([c], check=False).ok for c in checks), UPSTREAM_WAIT)
    service(t, keepalived, bool(changed & {KEEPALIVED, *SCRIPTS}))


# -- facts ------------------------------------------------------------------------------------------

def vips(lab: Lab, node: Node) -> Fact[list[str]]:
    """The VIPs the tenant holds on its interface of the shared VLAN."""
    fact = nic(node, lab.shared_vlan.bridge)
    return Fact(fact.node, fact.argv, lambda r: vips_in(lab, fact.parse(r)))


def vips_in(lab: Lab, found: Nic) -> list[str]:
    on = {a.ip for a in found.addresses}
    return [str(v.ip) for v in (lab.vrrp.instances.ipv4.vip, lab.vrrp.instances.ipv6.vip) if v.ip in on]


def vrrp(node: Node) -> Fact[str | None]:
    """The state keepalived last reported (MASTER, BACKUP, FAULT), through the seed's notify script."""
    return Fact(node.name, ("cat", node.path(STATUS)), lambda r: vrrp_state(r.out))


def vrrp_state(text: str) -> str | None:
    m = re.search(r"transitioned to the (\S+) state", text)
    return m.group(1) if m else None


def daemons(lab: Lab, node: Node) -> Fact[list[str]]:
    """keepalived and radvd, and the fast profile's uplink probers, where not running."""
    return dead(node, daemon_pids(lab))


def daemon_pids(lab: Lab) -> dict[str, str]:
    """The tenant's daemons: name -> its own pid file."""
    return DAEMONS | (PROBERS if lab.vrrp.profile == "fast" else {})


def transitions(text: str, since: float) -> list[tuple[float, str]]:
    """(time on the tenant's clock, state) of each sync group transition since `since`."""
    out = []
    for line in text.splitlines():
        ts, *words = line.split()
        if float(ts) >= since and len(words) > 2:
            out.append((float(ts), words[2]))
    return out


def holders(lab: Lab, node_of: Callable[[str], Node]) -> dict[str, list[str]]:
    """Tenant name -> the VIPs it holds (the tenants read at once)."""
    found = read(node_of, [vips(lab, node_of(t.vm)) for t in lab.tenants.values()])
    return dict(zip(lab.tenants, found, strict=True))
