"""The lab's own Internet: the upstream gateway, 9.9.9.9 and 2620:fe::fe, with DNS, HTTP and
a tiny Debian-style package repository, so the seed's checks (ping, DNS, HTTP, `apt update`)
work in a sealed lab. It is a node like the others: files, then services."""

from __future__ import annotations

import hashlib

from lab import model
from lab.debian import MIRROR_HOST, RELEASE
from lab.model import Lab
from lab.render import File, render_dirs
from lab.roles.target import Target
from lab.substrate.base import Node, Service

TEMPLATES = ("internet",)
DAEMONS: dict[str, str] = {"dnsmasq": "/run/dnsmasq.pid"}

# Names the lab looks up: the containers' apt source, and the resolver's own name.
NAMES = (MIRROR_HOST, "dns.quad9.net")
ARCH = "amd64"


def addresses(lab: Lab) -> list[tuple[str, str]]:
    """(address/prefix, where) the Internet holds: its side of VLAN 214, and the resolver."""
    gw, res = lab.internet.gateway, lab.internet.resolver
    return [(str(gw.ipv4), "eth0"), (str(gw.ipv6), "eth0"), (str(gw.link_local), "eth0"),
            (f"{res.ipv4}/32", "lo"), (f"{res.ipv6}/128", "lo")]


def files(lab: Lab) -> dict[str, File]:
    gw, res = lab.internet.gateway, lab.internet.resolver
    listen = [str(res.ipv4), str(res.ipv6), str(gw.ipv4.ip), str(gw.link_local.ip)]
    out = render_dirs(TEMPLATES, {"lab": lab, "listen": listen, "names": NAMES})
    out |= apt_repository()
    return out


def apt_repository() -> dict[str, File]:
    """An empty but valid `bookworm main` repository; apt checks Packages against Release."""
    base = f"/srv/www/debian/dists/{RELEASE}"
    index = {f"main/binary-{ARCH}/Packages": ""}
    sums = "".join(f" {hashlib.sha256(data.encode()).hexdigest()} {len(data)} {name}\n"
                   for name, data in index.items())
    release = (f"Origin: vxlab\nLabel: vxlab\nSuite: {RELEASE}\nCodename: {RELEASE}\n"
               f"Date: Thu, 01 Jan 2026 00:00:00 UTC\nArchitectures: {ARCH}\n"
               f"Components: main\nDescription: the lab's own Debian mirror (empty)\n"
               f"SHA256:\n{sums}")
    out = {f"{base}/Release": File(release, 0o644)}
    for name, data in index.items():
        out[f"{base}/{name}"] = File(data, 0o644)
    return out


def services(t: Target) -> list[Service]:
    p = t.path
    return [
        Service("dnsmasq", ("dnsmasq", "--keep-in-foreground", "--user=root",
                            f"--conf-file={p('/etc/dnsmasq.conf')}", f"--pid-file={p(DAEMONS['dnsmasq'])}")),
        # Python's http.server on "::" answers IPv4 too (it turns IPV6_V6ONLY off).
        Service("http", ("/usr/bin/python3", "-m", "http.server", "--bind", "::",
                         "--directory", p("/srv/www"), "80")),
    ]


def apply(t: Target) -> None:
    for path, f in t.files.items():
        t.node.put(path, f.text, f.mode)
    for addr, dev in addresses(t.lab):
        t.node.run(["ip", "addr", "replace", addr, "dev", dev])
    t.node.run(["ip", "link", "set", "eth0", "up"])
    for s in services(t):
        t.node.start(s)


def target(lab: Lab, node: Node) -> Target:
    return Target(lab, model.Node(node.name, "internet"), node, files(lab))


def provision(node: Node, lab: Lab) -> None:
    """The lab's Internet on this node (a namespace of this host, on either substrate)."""
    apply(target(lab, node))
