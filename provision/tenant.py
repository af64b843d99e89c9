"""blueVM, greenVM: the VLAN 7 switch and VXLAN (interfaces file), radvd and keepalived."""

from __future__ import annotations

from lab.substrate.base import Service
from provision import Target
from provision.common import ifupdown, place, service, sysctl

RADVD = "/etc/radvd.conf"
KEEPALIVED = "/etc/keepalived/keepalived.conf"
SCRIPTS = ("/usr/local/bin/keepalived_check_ipv4.sh", "/usr/local/bin/keepalived_check_ipv6.sh",
           "/usr/local/bin/keepalived_notify.sh", "/usr/local/bin/keepalived_notify_fifo.sh")


def services(t: Target) -> tuple[Service, Service]:
    p = t.path
    radvd = Service("radvd", ("radvd", "--nodaemon", "--logmethod", "stderr", "--config", p(RADVD),
                              "--pidfile", p("/run/radvd.pid")), unit="radvd",
                    pidfiles=(p("/run/radvd.pid"),))
    pids = {k: p(f"/run/{k}.pid") for k in ("keepalived", "keepalived_vrrp", "keepalived_checkers")}
    keepalived = Service("keepalived", (
        "keepalived", "--dont-fork", "--log-console", "--log-detail", "--vrrp",
        "--use-file", p(KEEPALIVED), "--pid", pids["keepalived"],
        "--vrrp_pid", pids["keepalived_vrrp"], "--checkers_pid", pids["keepalived_checkers"],
        "--config-id", t.spec.name), unit="keepalived", pidfiles=tuple(pids.values()))
    return radvd, keepalived


def apply(t: Target) -> None:
    changed = place(t)
    sysctl(t)
    ifupdown(t)
    radvd, keepalived = services(t)
    service(t, radvd, RADVD in changed)
    service(t, keepalived, bool(changed & {KEEPALIVED, *SCRIPTS}))
