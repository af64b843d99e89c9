"""What the tasks do, as library functions: tasks.py only parses arguments and calls these."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lab import checks, lifecycle, model, roles
from lab.embedded import EmbeddedLab, recorded
from lab.embedded import age as embedded_age
from lab.embedded import labs as embedded_labs
from lab.facts import Fact, read
from lab.host.run import sh
from lab.pool import pmap
from lab.roles import Target, client, dhcp, internet, tenant
from lab.substrate.base import Node, Runtime, Service
from lab.topology import Topology
from lab.ui import Reporter

if TYPE_CHECKING:
    from lab.drills import CutReport, CutSeries, DhcpReport, DhcpSeries, GatewayReport, GatewaySeries


class UsageError(Exception):
    """A request that cannot be served; the message says what to do instead."""


SUBSTRATES = ("netns", "vagrant")


def select(lab: model.Lab, substrate: str | None = None, driver: str | None = None,
           need_up: bool = True, as_running: bool = True) -> Runtime:
    """The lab the tasks act on: the embedded one if it is up, else this directory's Vagrant
    VMs if they exist; `substrate` (netns or vagrant) chooses. `as_running`: an embedded lab
    that is up is taken as it was built (its recorded description), not as the file now says:
    what runs is what status, checks, drills and down act on; up and provision converge it."""
    if substrate not in (None, *SUBSTRATES):
        raise UsageError(f"--substrate must be one of {', '.join(SUBSTRATES)}, not {substrate!r}")
    if as_running and substrate != "vagrant":
        lab = recorded(lab.name) or lab
    elab = EmbeddedLab(lab, driver) if substrate != "vagrant" else None
    if elab is not None and (substrate == "netns" or elab.exists()):
        if need_up and not elab.exists():
            raise UsageError(f"no lab {lab.name!r} is up: start the embedded one with `invoke up`")
        return elab
    from lab.vagrant.lab import VagrantLab

    vlab = VagrantLab(lab)
    if vlab.exists():
        return vlab
    if substrate == "vagrant":
        raise UsageError(f"no Vagrant VMs of lab {lab.name!r} here: `vagrant up` first")
    if need_up:
        raise UsageError(f"no lab {lab.name!r} is up: start the embedded one with `invoke up`, "
                         "or the VMs with `vagrant up && invoke provision`")
    return elab


def provision(rt: Runtime, report: Reporter, timeout: float | None = None) -> float:
    """Make or converge the selected lab; the seconds it took."""
    return lifecycle.converge(rt, report, timeout)


def node_of(elab: Runtime, name: str) -> Node:
    if name not in elab.names():
        raise UsageError(f"no node {name!r}; nodes: {', '.join(elab.names())}")
    return elab.node(name)


def argv_after_dashes(argv: list[str] | None = None) -> list[str]:
    """The command after `--`, as typed (invoke itself keeps only a joined string)."""
    argv = sys.argv if argv is None else argv
    if "--" not in argv:
        return []
    return argv[argv.index("--") + 1:]


def exec_(elab: Runtime, name: str, command: list[str]) -> int:
    if not command:
        raise UsageError("say what to run: invoke exec NODE -- CMD [ARG...]")
    from lab.roles.common import own_files

    node = node_of(elab, name)
    return subprocess.call(node.interactive(own_files(node, command)))


def shell(elab: Runtime, name: str) -> int:
    env = {**os.environ, "PS1": f"[{elab.lab.name}] {name}:\\w# "}
    return subprocess.call(node_of(elab, name).interactive(["bash", "--norc", "-i"]), env=env)


def services_of(elab: Runtime, name: str) -> list[Service]:
    node = node_of(elab, name)
    spec = Topology(elab.lab).node(name)
    if spec.role == "internet":
        return roles.services(internet.target(elab.lab, node))
    return roles.services(Target.of(elab.lab, spec, node, elab.deployment))


def logs(elab: Runtime, name: str, service: str | None, lines: int) -> str:
    node = node_of(elab, name)
    svcs = services_of(elab, name)
    if service:
        svcs = [s for s in svcs if s.name == service]
        if not svcs:
            raise UsageError(f"{name} has no service {service!r}; it has: "
                             f"{', '.join(s.name for s in services_of(elab, name)) or 'none'}")
    return "\n".join(f"==> {name} {s.name} <==\n" + node.log(s, lines) for s in svcs)


def capture(elab: Runtime, name: str, iface: str, write: str | None, count: int | None) -> int:
    argv = ["tcpdump", "-n", "-i", iface, *(["-c", str(count)] if count else [])]
    node = node_of(elab, name)
    if not write:
        return subprocess.call(node.interactive([*argv, "-l"]))
    with open(write, "wb") as f:  # the pcap comes out on stdout: written on this host
        return subprocess.call(node.interactive([*argv, "-U", "-w", "-"]), stdout=f)


# -- labs on this host ---------------------------------------------------------------------------

def labs(here: model.Lab) -> list[dict]:
    """Every lab on this host: the embedded ones (each as it was built) and this directory's
    Vagrant VMs; with substrate, driver, state and age."""
    out = []
    for name in embedded_labs():
        lab, age = recorded(name), embedded_age(name)
        if lab is None:
            out.append({"lab": name, "substrate": "embedded", "driver": "?",
                        "state": "unknown (no description recorded: built by an older vxlab)",
                        "nodes": 0, "age_s": round(age)})
            continue
        elab = EmbeddedLab(lab)
        state = "down" if not elab.exists() else ("converged" if not elab.problems() else "NOT converged")
        out.append({"lab": name, "substrate": "embedded", "driver": elab.driver, "state": state,
                    "nodes": len(elab.names()), "age_s": round(age)})
    from lab.vagrant.lab import VagrantLab

    vlab = VagrantLab(here)
    if vlab.exists():
        states = vlab.vms.states()
        running_vms = sum(s == "running" for s in states.values())
        out.append({"lab": here.name, "substrate": "vagrant", "driver": vlab.deployment.driver,
                    "state": f"{running_vms} of {len(states)} VMs running", "nodes": len(vlab.names()),
                    "age_s": None})
    return out


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


# -- status -----------------------------------------------------------------------------------

def status(rt: Runtime) -> dict:
    """Nodes, containers, daemons, VRRP state, leases: a dict (printed as table or JSON). The
    state is what the roles' facts say (keepalived's own report, dhcpd's own failover state),
    every node read at once."""
    lab, topology = rt.lab, Topology(rt.lab)
    wanted: list[tuple[str, str, Fact]] = []
    for name in rt.names():
        spec, node = topology.node(name), rt.node(name)
        if spec.role == "tenant":
            wanted += [(name, "vips", tenant.vips(lab, node)), (name, "vrrp", tenant.vrrp(node))]
        elif spec.role == "dhcp":
            wanted.append((name, "failover", dhcp.failover(lab, node)))
            if lab.dhcp.v6 == "stateful":
                wanted.append((name, "failover6", dhcp.failover6(lab, node)))
        elif spec.role == "client":
            wanted += [(name, "addressing", f) for f in client.addressing_facts(lab, node)]
    found: dict[str, dict[str, list]] = {}
    for (name, key, _), value in zip(wanted, read(rt.node, [f for *_, f in wanted]), strict=True):
        found.setdefault(name, {}).setdefault(key, []).append(value)
    def services(name: str) -> dict[str, str]:  # as the substrate supervises them: by pid
        node = rt.node(name)
        return {s.name: ("running" if node.running(s) else "DEAD") for s in services_of(rt, name)}

    nodes = []
    for name, running in zip(rt.names(), pmap(services, rt.names()), strict=True):
        node, facts = rt.node(name), found.get(name, {})
        row: dict = {"node": name, "kind": node.kind, "services": running}
        if "vrrp" in facts:
            row |= {"vrrp": facts["vrrp"][0] or "unknown", "vips": facts["vips"][0]}
        if "failover" in facts:
            row["failover"] = facts["failover"][0] or "unknown"
        if "failover6" in facts:
            row["failover6"] = facts["failover6"][0] or "unknown"
        if "addressing" in facts:
            a = client.addressing_of(lab, facts["addressing"])
            row |= {"tenant": topology.node(name).tenant, "ipv4": a.ipv4, "gateway4": a.gateway4,
                    "slaac": a.slaac, "gateway6": a.gateway6}
            if lab.dhcp.v6 == "stateful":
                row["dhcp6"] = a.dhcp6
        nodes.append(row)
    held = {topology.node(n["node"]).tenant: n["vips"] for n in nodes if "vips" in n}
    split = checks.split_brain(lab, held) if len(held) == len(lab.tenants) else None
    problems = ([split] if split else []) + rt.problems()
    return {"lab": lab.name, "substrate": "embedded" if rt.deployment.substrate == "netns" else "vagrant",
            "driver": rt.deployment.driver, "converged": not problems, "problems": problems, "nodes": nodes}


def status_rows(st: dict) -> tuple[str, list[str], list[tuple[str, ...]], list[str]]:
    """The status for people: a title, the table's header and rows, the problems."""
    title = (f"lab {st['lab']} ({st.get('substrate', 'embedded')}, {st['driver']} containers): "
             + ("converged" if st["converged"] else "NOT converged"))
    rows = []
    for n in st["nodes"]:
        services = " ".join(f"{k}:{v}" for k, v in n["services"].items()) or "-"
        if "vrrp" in n:
            what = f"VRRP {n['vrrp']} {' '.join(n['vips'])}".strip()
        elif "failover" in n:
            what = (f"DHCP failover {n['failover']}"
                    + (f", DHCPv6 {n['failover6']}" if "failover6" in n else ""))
        elif "ipv4" in n:
            what = (f"{n['ipv4'] or 'no lease'} via {n['gateway4'] or '-'}; "
                    f"{n['slaac'] or 'no SLAAC'} via {n['gateway6'] or '-'}"
                    + (f"; DHCPv6 {n['dhcp6'] or 'no lease'}" if "dhcp6" in n else ""))
        else:
            what = ""
        rows.append((n["node"], n["kind"], services, what))
    return title, ["NODE", "KIND", "SERVICES", "STATE"], _folded(st["nodes"], rows), st["problems"]


FOLD = 16  # clients in the lab: beyond, each tenant's healthy ones are one row


def _folded(nodes: list[dict], rows: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """A big lab's clients that are well (a lease, SLAAC, both gateways, daemons running) as
    one row per tenant, where its first client was; the others in full."""
    def well(n: dict) -> bool:
        return (all(n.get(k) for k in ("ipv4", "gateway4", "slaac", "gateway6"))
                and all(v == "running" for v in n["services"].values()))

    if sum("ipv4" in n for n in nodes) <= FOLD:
        return rows
    groups: dict[str, list[dict]] = {}
    out: list[tuple[str, ...] | str] = []
    for n, row in zip(nodes, rows, strict=True):
        if "ipv4" in n and well(n):
            if n["tenant"] not in groups:
                out.append(n["tenant"])
            groups.setdefault(n["tenant"], []).append(n)
        else:
            out.append(row)

    def fold(tenant: str) -> tuple[str, ...]:
        g = groups[tenant]
        return (f"{len(g)} clients of {tenant}", g[0]["kind"], "all running",
                f"each with a lease, SLAAC and both gateways ({g[0]['node']} ... {g[-1]['node']})")

    return [fold(x) if isinstance(x, str) else x for x in out]


def status_json(st: dict) -> str:
    return json.dumps(st, indent=2)


# -- doctor -------------------------------------------------------------------------------------

TOOLS = {  # command: Debian package
    "ip": "iproute2", "ifup": "ifupdown", "iptables-restore": "iptables", "conntrack": "conntrack",
    "keepalived": "keepalived", "radvd": "radvd", "dhcpd": "isc-dhcp-server",
    "kea-dhcp4": "kea-dhcp4-server", "kea-ctrl-agent": "kea-ctrl-agent",
    "dhclient": "isc-dhcp-client", "dnsmasq": "dnsmasq-base", "tcpdump": "tcpdump",
    "ping": "iputils-ping", "curl": "curl", "lxd": "lxd", "lxc": "lxd-client",
    "mmdebstrap": "mmdebstrap",
}


def doctor() -> list[tuple[str, bool, str]]:
    """(check, ok, how to fix) for what the embedded lab needs from this host."""
    out = [("running as root", os.geteuid() == 0, "run the tasks as root (sudo -E invoke ...)")]
    for tool, pkg in TOOLS.items():
        out.append((f"command {tool}", shutil.which(tool) is not None, f"apt-get install {pkg}"))
    probe = f"vxlabdoctor{os.getpid()}"
    if os.geteuid() == 0 and shutil.which("ip"):
        made = sh(["ip", "netns", "add", probe], check=False).ok
        out.append(("network namespaces", made, "a kernel with CONFIG_NET_NS"))
        if made:
            try:
                for kind, args in (("veth", ["type", "veth"]), ("bridge", ["type", "bridge"]),
                                   ("vxlan", ["type", "vxlan", "id", "7", "dstport", "4789"])):
                    ok = sh(["ip", "-n", probe, "link", "add", f"t-{kind}", *args], check=False).ok
                    out.append((f"kernel {kind} links", ok, f"modprobe {kind}"))
            finally:
                sh(["ip", "netns", "del", probe], check=False)
    mounts = Path("/proc/self/mounts").read_text().split("\n")
    cg = any(len(f := m.split()) > 2 and f[2] in ("cgroup", "cgroup2") for m in mounts)
    out.append(("cgroups mounted (LXD containers)", cg, "mount the cgroup hierarchies (v1 or v2), "
                "or use --driver netns"))
    for profile in ("usr.sbin.dhcpd", "sbin.dhclient", "usr.sbin.dhclient"):
        enforced = _apparmor_enforced(profile)
        out.append((f"AppArmor {profile} not enforced", not enforced,
                    f"aa-complain /etc/apparmor.d/{profile} (it denies the lab's per-node paths)"))
    return out


def _apparmor_enforced(profile: str) -> bool:
    try:
        text = Path("/sys/kernel/security/apparmor/profiles").read_text()
    except OSError:
        return False
    name = "/" + profile.replace(".", "/")
    return any(line.startswith(name + " ") and "(enforce)" in line for line in text.splitlines())


# -- checks ---------------------------------------------------------------------------------------

def check(elab: Runtime, group: str | None, wait: float, json_file: str | None,
          junit_file: str | None, progress=None):
    """Run the checks of one group (or all) on the running lab; returns the report."""
    from lab import checks

    every = checks.build(elab.lab, elab.node, ovs=elab.deployment.form.ovs)
    report = checks.run(checks.select(every, group), elab.node, wait=wait,
                        progress=progress or (lambda o: None))
    if not report.ok:
        from lab.checks.diagnose import causes

        report.causes = causes(elab)
    if json_file:
        Path(json_file).write_text(report.json())
    if junit_file:
        Path(junit_file).write_text(report.junit())
    return report


# -- drills ---------------------------------------------------------------------------------------

def drill(elab: Runtime, tenant: str, mode: str, family: str, deadline: float | None,
          json_file: str | None, plot_file: str | None, progress, repeat: int | None = None
          ) -> GatewayReport | GatewaySeries:
    """One drill (its report as always), or with `repeat` that many trials back to back (a
    series: every trial and their distributions; progress then says one line per trial)."""
    from lab import drills

    deadline = _deadline(elab, deadline)
    return _drilled(lambda: drills.run(elab, tenant, mode, family, deadline, progress) if repeat is None
                    else drills.repeat(elab, tenant, mode, family, repeat, deadline, progress),
                    json_file, plot_file)


def cut_drill(elab: Runtime, mode: str, node: str | None, hold: float, deadline: float | None,
              json_file: str | None, plot_file: str | None, progress, repeat: int | None = None
              ) -> CutReport | CutSeries:
    """failover.vxlan (mode underlay or port) or failover.link NODE (mode carrier or admin)."""
    from lab.drills import cut

    if not hold >= 0:
        raise UsageError(f"--hold must be a number of seconds, at least 0, not {hold!r}")
    deadline = _deadline(elab, deadline)
    return _drilled(lambda: cut.run(elab, mode, node, deadline, hold, progress) if repeat is None
                    else cut.repeat(elab, mode, node, repeat, deadline, hold, progress), json_file, plot_file)


def _deadline(elab: Runtime, deadline: float | None) -> float:
    if deadline is None:  # VRRP's pace: slower timing (emulated VMs) gets longer; reading
        # the whole lab back to its initial state takes seconds whatever the profile
        deadline = max(10.0, 20.0 * elab.deployment.timing.advert_int)
    return deadline


def _drilled(drill, json_file: str | None, plot_file: str | None):
    """Run a failover drill (or its series); write its JSON and its plot if asked."""
    from lab import drills

    if plot_file:
        from lab import plot

        try:  # before the drill, not after minutes of trials
            plot.check_format(Path(plot_file))
        except ValueError as e:
            raise UsageError(f"--plot: {e}") from None
    try:
        report = drill()
    except drills.DrillError as e:
        raise UsageError(str(e)) from None
    if json_file:
        Path(json_file).write_text(report.to_json())
    if plot_file:
        plot.plot(report, Path(plot_file))
    return report


def dhcp_drill(elab: Runtime, deadline: float, json_file: str | None, progress,
               repeat: int | None = None) -> DhcpReport | DhcpSeries:
    from lab import drills

    try:
        if repeat is None:
            report = drills.dhcp(elab, deadline, progress)
        else:
            report = drills.dhcp_repeat(elab, repeat, deadline, progress)
    except drills.DrillError as e:
        raise UsageError(str(e)) from None
    if json_file:
        Path(json_file).write_text(report.to_json())
    return report


def repeat_count(value) -> int | None:
    """--repeat as typed: absent (one trial, the report as always) or a whole number >= 1."""
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1 or str(value).strip() != str(n):
        raise UsageError(f"--repeat must be a whole number of trials, at least 1, not {value!r}")
    return n


def bound_ms(value) -> float | None:
    if value is None:
        return None
    try:
        ms = float(value)
    except ValueError:
        ms = -1
    if not ms > 0:
        raise UsageError(f"--bound must be a number of milliseconds above 0, not {value!r}")
    return ms
