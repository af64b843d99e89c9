"""Render the lab's files: model -> Jinja2 templates in files/ -> {node: {path: File}}.

Templates live in files/<role>/ laid out like the files they produce on the node
(files/tenant/etc/radvd.conf.j2 -> /etc/radvd.conf on blueVM and greenVM). A template's
file mode is the rendered file's mode, so the seed's executable scripts stay executable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

from lab.debian import SOURCES_LIST
from lab.model import Lab, Node

if TYPE_CHECKING:
    from lab.deployment import Deployment

FILES = Path(__file__).resolve().parent / "files"


@dataclass(frozen=True)
class Form:
    """Everything that differs between the VMs' files and the embedded lab's: the whole list.

    - `ovs`: VLAN 7 on the tenants is the seed's OVS bridge + fake bridge + VXLAN tunnel on the
      VMs; in namespaces a Linux bridge + kernel VXLAN device (no OVS datapath, no 802.1q).
    - `bridge_nf_off`: br_netfilter is built into the host kernel and on in every namespace,
      so the tenants' bridged frames would cross iptables unless switched off.
    - `state_dir`: namespaces share the host's /run and /usr/local/bin, so every path a node
      writes or runs (scripts, pid, lease, status files) lives under that node's own root,
      `<state_dir>/<node>`. VMs and LXD containers have their own file systems: root is "".
    - light containers (container driver `netns`) also get files/light/: they share the
      host's /etc, so dhclient runs with the lab's own script, not Debian's.
    """

    substrate: str
    ovs: bool
    bridge_nf_off: bool
    state_dir: str | None


FORMS = {
    "vagrant": Form("vagrant", ovs=True, bridge_nf_off=False, state_dir=None),
    "netns": Form("netns", ovs=False, bridge_nf_off=True, state_dir="/run/vxlab/{lab}"),
}


@dataclass(frozen=True)
class File:
    text: str
    mode: int


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(FILES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def context(lab: Lab, node: Node, deployment: Deployment) -> dict:
    root = deployment.root(lab, node)
    ctx: dict = {"lab": lab, "node": node, "form": deployment.form, "timing": deployment.timing,
                 "prober": deployment.prober,
                 "role": node.role, "path": lambda p: root + p, "apt_sources": SOURCES_LIST}
    if node.tenant:
        t = lab.tenants[node.tenant]
        peer = lab.peer(node.tenant)
        ctx |= {"name": node.tenant, "t": t, "peer": peer}
        if node.role == "dhcp":
            ctx |= {"server": t.dhcp_server, "peer_server": lab.tenants[peer].dhcp_server}
    return ctx


def templates_in(dirs: tuple[str, ...]) -> list[tuple[str, Path]]:
    """(path on the node, template file) for every template of these folders, by path."""
    out = []
    for d in dirs:
        base = FILES / d
        for tpl in sorted(base.rglob("*.j2")):
            out.append(("/" + str(tpl.relative_to(base))[: -len(".j2")], tpl))
    return sorted(out)


def dirs(lab: Lab, deployment: Deployment, node: Node) -> tuple[str, ...]:
    """The template folders a node gets: its role's, its DHCP server's kind, and light
    containers' own."""
    from lab.roles import ROLES

    fast = ("tenant-fast",) if deployment.prober and node.role == "tenant" else ()
    server = (f"dhcp-{lab.dhcp.server}",) if node.role == "dhcp" else ()
    if node.role == "dhcp" and lab.dhcp.v6 == "stateful":
        server += ("dhcp-kea6",)
    return ROLES[node.role].TEMPLATES + fast + server + (("light",) if deployment.light(node) else ())


def render_node(lab: Lab, node: Node, deployment: Deployment, env: jinja2.Environment | None = None
                ) -> dict[str, File]:
    return render_dirs(dirs(lab, deployment, node), context(lab, node, deployment), env)


def render_dirs(dirs: tuple[str, ...], ctx: dict, env: jinja2.Environment | None = None
                ) -> dict[str, File]:
    env = env or environment()
    files = {}
    for path, tpl in templates_in(dirs):
        text = env.get_template(str(tpl.relative_to(FILES))).render(ctx)
        files[path] = File(text, tpl.stat().st_mode & 0o777)
    return files


def render(lab: Lab, deployment: Deployment | str) -> dict[str, dict[str, File]]:
    """Every node's files, keyed by node name then by absolute path on the node. A substrate's
    name stands for its deployment with the lab's own defaults."""
    if isinstance(deployment, str):
        from lab.deployment import Deployment

        deployment = Deployment.of(lab, deployment)
    env = environment()
    return {n.name: render_node(lab, n, deployment, env) for n in lab.nodes()}


def write(rendered: dict[str, dict[str, File]], out: Path) -> list[Path]:
    """Write DIR/<node>/<path> for every file, with its mode; returns what was written."""
    written = []
    for node, files in rendered.items():
        for path, f in files.items():
            dest = out / node / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(f.text)
            os.chmod(dest, f.mode)
            written.append(dest)
    return written
