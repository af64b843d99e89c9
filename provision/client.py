"""blueC0, greenC1, ...: DHCP for IPv4 (the failover pair), SLAAC for IPv6 (radvd)."""

from __future__ import annotations

from lab.substrate.base import Service
from provision import Target
from provision.common import ifupdown, place, service

SCRIPT = "/usr/local/sbin/dhclient-script"


def dhclient(t: Target) -> Service:
    """Light containers: dhclient with the node's own paths (ifupdown's are shared by all
    namespaces) and the lab's script (Debian's would write the host's resolv.conf)."""
    p, nic = t.path, t.lab.containers.nic
    return Service("dhclient", ("dhclient", "-4", "-d", "-cf", "/dev/null", "-sf", p(SCRIPT),
                                "-pf", p("/run/dhclient.pid"), "-lf", p("/var/lib/dhcp/dhclient.leases"),
                                nic))


def apply(t: Target) -> None:
    changed = place(t)
    if t.light:
        ifupdown(t, exclude=(t.lab.containers.nic,))
        t.node.run(["ip", "link", "set", t.lab.containers.nic, "up"])
        service(t, dhclient(t), SCRIPT in changed)
    else:
        ifupdown(t)  # the container's own ifupdown runs its own dhclient
