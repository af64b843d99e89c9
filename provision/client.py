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
        t.node.run(["mkdir", "-p", t.path("/var/lib/dhcp")])  # dhclient's lease file
        service(t, dhclient(t), SCRIPT in changed)
    else:
        ifupdown(t)  # the container's own ifupdown runs its own dhclient


LEASE_FILES = ("/var/lib/dhcp/dhclient.leases", "/var/lib/dhcp/dhclient.eth0.leases")


def lease_server(t: Target) -> str | None:
    """The DHCP server that gave the client its current lease (its last lease's identifier)."""
    import re

    for path in LEASE_FILES:
        found = re.findall(r"option dhcp-server-identifier ([\d.]+);", t.node.read(path) or "")
        if found:
            return found[-1]
    return None


def new_lease(t: Target) -> None:
    """Drop the client's lease and ask for a new one (DISCOVER, not a renewal)."""
    nic = t.lab.containers.nic
    if t.light:
        t.node.stop(dhclient(t))
        t.node.run(["ip", "-4", "addr", "flush", "dev", nic])
        t.node.run(["rm", "-f", *(t.path(p) for p in LEASE_FILES)])
        t.node.start(dhclient(t))
    else:
        args = ["-i", "/etc/network/interfaces", "--state-dir", "/run/network", nic]
        t.node.run(["ifdown", "--force", *args], check=False)
        t.node.run(["rm", "-f", *LEASE_FILES])
        t.node.run(["sh", "-c", f"ifup {' '.join(args)} > /dev/null 2>&1 &"])  # we time it, not ifup
