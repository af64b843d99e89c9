"""vxlab tasks (`invoke --list`). Thin: parse arguments, call the library in lab/."""

from __future__ import annotations

import inspect
import json as _json
import os
import shlex
import sys
from pathlib import Path

from invoke import Collection, Exit, task

from lab import commands, drills, model, ui
from lab.commands import UsageError
from lab.render import FORMS, render, write

LAB = "lab description (default: lab.yaml)"
OUT = Path("vxlab-out")  # what tasks draw or write when not told where
SUBSTRATE = ("which lab: netns (the embedded one) or vagrant (this directory's VMs); default: "
             "the embedded lab if it is up, else the VMs if they exist")


def _load(lab_file: str | None, sets: list[str] | None = None) -> model.Lab:
    # The Vagrantfile, which vagrant (and python-vagrant) runs, reads the same description.
    if lab_file:
        os.environ["VXLAB_LAB"] = str(Path(lab_file).resolve())
    if sets:
        os.environ["VXLAB_SET"] = shlex.join(sets)
    try:
        return model.load(lab_file or model.DEFAULT_LAB, sets or ())
    except model.LabError as e:
        raise Exit(f"invalid lab description:\n{e}", code=2) from None


def _lab(lab_file, sets, substrate=None, driver=None, need_up=True, as_running=True):
    try:
        return commands.select(_load(lab_file, sets), substrate, driver, need_up, as_running)
    except UsageError as e:
        raise Exit(str(e), code=2) from None
    except RuntimeError as e:  # e.g. Vagrant cannot tell the VMs' state
        raise Exit(f"error: {e}", code=1) from None


def _file_in_the_way(directory: Path) -> Path | None:
    """The first of a directory-to-be and its parents that exists and is no directory."""
    return next((d for d in (directory, *directory.parents) if d.exists() and not d.is_dir()), None)


def _say(msg: str) -> None:
    print(msg, flush=True)


def _guard(fn, *args):
    """Run a library call; turn its expected failures into a one-line error and exit code."""
    try:
        return fn(*args)
    except UsageError as e:
        raise Exit(str(e), code=2) from None
    except (RuntimeError, TimeoutError) as e:
        raise Exit(f"error: {e}", code=1) from None
    except OSError as e:  # e.g. --json, --junit, --plot or --write naming a path that cannot be written
        where = f"{e.filename}: " if e.filename else ""
        raise Exit(f"error: {where}{e.strerror or e}", code=1) from None


@task(name="render", help={"lab": LAB, "out": "directory to write DIR/<node>/<path on the node>",
                           "substrate": "vagrant (the VMs' files) or netns (the embedded lab's)"})
def render_(c, out, lab=None, substrate="vagrant", set_=None):
    """Render every node's files from the lab description."""
    if substrate not in FORMS:
        raise Exit(f"--substrate must be one of {', '.join(FORMS)}, not {substrate!r}", code=2)
    files = render(_load(lab, set_), substrate)  # validated and rendered before anything is written
    target = Path(out)
    if in_the_way := _file_in_the_way(target):
        raise Exit(f"--out {out}: {in_the_way} is a file; render writes a tree of directories "
                   "there (DIR/<node>/<path on the node>)", code=2)
    try:
        written = write(files, target)
    except OSError as e:
        raise Exit(f"cannot write under {out}: {e.filename}: {e.strerror}", code=1) from None
    for path in written:
        print(path)


@task(help={"lab": LAB, "driver": "containers: lxd (default in lab.yaml) or netns (light)",
            "timeout": "seconds to wait for convergence"})
def up(c, lab=None, driver=None, timeout=120, set_=None):
    """Build and provision the embedded lab; wait until it has converged."""
    if driver not in (None, "lxd", "netns"):
        raise Exit("--driver must be lxd or netns", code=2)
    elab = _lab(lab, set_, "netns", driver, need_up=False, as_running=False)
    try:
        took = _guard(commands.provision, elab, ui.for_terminal(), float(timeout))
    except KeyboardInterrupt:
        print(f"\ninterrupted: what lab {elab.lab.name} has made so far stays; `invoke up` goes on "
              "from there, `invoke down` removes it", file=sys.stderr, flush=True)
        os._exit(130)  # now: the threads still waiting on commands are not waited for
    print(f"lab {elab.lab.name} is up and converged in {took:.1f} s "
          f"({elab.driver} containers); try `invoke status`")


@task(help={"lab": LAB})
def down(c, lab=None, set_=None):
    """Remove everything the lab made (also after a failed or interrupted up)."""
    elab = _lab(lab, set_, "netns", need_up=False)
    removed = _guard(elab.down, _say)
    print(f"lab {elab.lab.name}: " + ("removed" if removed else "nothing to remove"))


@task(name="ls", help={"lab": LAB, "json": "print JSON instead of a table"})
def ls(c, lab=None, json=False, set_=None):
    """The labs on this host (each embedded one, this directory's VMs): substrate, driver, state, age."""
    found = _guard(commands.labs, _load(lab, set_))
    if json:
        print(_json.dumps(found, indent=2))
        return
    rows = [(x["lab"], x["substrate"], x["driver"], str(x["nodes"]), x["state"], commands.age(x["age_s"]))
            for x in found]
    print(ui.plain_table(["LAB", "SUBSTRATE", "DRIVER", "NODES", "STATE", "AGE"], rows) if rows
          else "no lab on this host")


@task(help={"lab": LAB, "json": "print JSON instead of a table", "substrate": SUBSTRATE})
def status(c, lab=None, json=False, substrate=None, set_=None):
    """Nodes, containers, daemons, VRRP state, DHCP failover state, leases."""
    st = _guard(commands.status, _lab(lab, set_, substrate))
    if json:
        print(commands.status_json(st))
        return
    title, header, rows, problems = commands.status_rows(st)
    ui.table(header, rows, title)
    for p in problems:
        print(f"  problem: {p}")


@task(name="provision", help={"lab": LAB, "substrate": SUBSTRATE})
def provision_(c, lab=None, substrate=None, set_=None):
    """Converge the running lab to the lab description (re-apply what changed only).
    On the Vagrant VMs (after `vagrant up`): the whole provisioning, host ports sealed first."""
    took = _guard(commands.provision, _lab(lab, set_, substrate, as_running=False), ui.for_terminal())
    print(f"converged in {took:.1f} s")


@task(name="exec", help={"node": "a node of the lab (routerVM, blueC1, internet, ...)",
                        "substrate": SUBSTRATE})
def exec_(c, node, lab=None, substrate=None, set_=None):
    """Run a command on a node: invoke exec NODE -- CMD [ARG...]; exits with its code."""
    rc = _guard(commands.exec_, _lab(lab, set_, substrate), node, commands.argv_after_dashes())
    sys.exit(rc)


@task(help={"node": "a node of the lab", "substrate": SUBSTRATE})
def shell(c, node, lab=None, substrate=None, set_=None):
    """An interactive shell on a node."""
    sys.exit(_guard(commands.shell, _lab(lab, set_, substrate), node))


@task(help={"node": "a node of the lab", "service": "one of its daemons (default: all)",
            "lines": "how many lines", "substrate": SUBSTRATE})
def logs(c, node, service=None, lab=None, lines=50, substrate=None, set_=None):
    """A node's daemon logs."""
    print(_guard(commands.logs, _lab(lab, set_, substrate), node, service, int(lines)))


@task(help={"node": "a node of the lab", "iface": "interface on that node",
            "write": "pcap file to write (default: print packets live)",
            "count": "stop after this many packets", "substrate": SUBSTRATE})
def capture(c, node, iface, write=None, count=None, lab=None, substrate=None, set_=None):
    """tcpdump on a node's interface, live or to a pcap file."""
    sys.exit(_guard(commands.capture, _lab(lab, set_, substrate), node, iface, write, count))


@task
def doctor(c):
    """Check what this host needs for the embedded lab, and say how to fix each."""
    bad = 0
    for check, ok, fix in commands.doctor():
        print(f"{'ok ' if ok else 'BAD'}  {check}" + ("" if ok else f"  -> {fix}"))
        bad += not ok
    if bad:
        raise Exit(f"{bad} problem(s)", code=1)


CHECK_HELP = {"lab": LAB, "json": "also write the results as JSON to this file",
              "junit": "also write them as JUnit XML to this file",
              "wait": "seconds a failing check is retried while the lab converges (default 10)",
              "substrate": SUBSTRATE}


BIG = 24  # nodes: beyond, checks are shown one line per check, failures in full


def _check(lab, set_, group, json, junit, wait, substrate=None):
    elab = _lab(lab, set_, substrate)
    big = len(elab.names()) > BIG  # then a line per check, not per check and node; failures in full

    def progress(o):
        if o.ok and big:
            return
        print(f"{'ok  ' if o.ok else 'FAIL'} {o.check.name:24} {o.check.node:10} "
              + (o.check.expect if o.ok else f"expected {o.check.expect}; found {o.found}"), flush=True)

    report = _guard(commands.check, elab, group, float(wait), json, junit, progress)
    if big:
        print("\n".join(report.summary()))
    if report.causes:
        print("likely causes, as the nodes tell them:")
        print("\n".join(f"  {c}" for c in report.causes))
    print(report.table().splitlines()[-1])
    if not report.ok:
        raise Exit(code=1)


@task(name="connectivity", help=CHECK_HELP)
def test_connectivity(c, lab=None, json=None, junit=None, wait=10, substrate=None, set_=None):
    """Every check of the seed's "Check the results" (all groups below)."""
    _check(lab, set_, None, json, junit, wait, substrate)


@task(name="addressing", help=CHECK_HELP)
def test_addressing(c, lab=None, json=None, junit=None, wait=10, substrate=None, set_=None):
    """Leases, DNS, SLAAC (EUI-64) and default routes of every container."""
    _check(lab, set_, "addressing", json, junit, wait, substrate)


@task(name="gateway", help=CHECK_HELP)
def test_gateway(c, lab=None, json=None, junit=None, wait=10, substrate=None, set_=None):
    """The VRRP master holds both VIPs, the other is BACKUP; DHCP failover is normal."""
    _check(lab, set_, "gateway", json, junit, wait, substrate)


@task(name="vxlan", help=CHECK_HELP)
def test_vxlan(c, lab=None, json=None, junit=None, wait=10, substrate=None, set_=None):
    """The VXLAN ends reach each other; each switch learned the other tenant's containers."""
    _check(lab, set_, "vxlan", json, junit, wait, substrate)


@task(name="internet", help=CHECK_HELP)
def test_internet(c, lab=None, json=None, junit=None, wait=10, substrate=None, set_=None):
    """From every container: ping v4/v6, DNS, HTTP v4/v6, apt-get update."""
    _check(lab, set_, "internet", json, junit, wait, substrate)


@task(name="router", help=CHECK_HELP)
def test_router(c, lab=None, json=None, junit=None, wait=10, substrate=None, set_=None):
    """routerVM: fwmark rules, tables blue/green, flows marked by the master."""
    _check(lab, set_, "router", json, junit, wait, substrate)


REPEAT = ("run this many trials back to back, each from the initial state (checked before each); "
          "prints a table of the distributions, the JSON holds every trial and the summary")
BOUND = "fail (exit 1, naming trial and container) if any outage lasts more than this many ms"
DRILL_HELP = {"lab": LAB, "mode": drills.help_text(),
              "family": "uplink mode: 4, 6 or both", "json": "write the report as JSON to this file",
              "plot": "draw to this PNG or SVG file: the timeline, or with --repeat the outages' "
                      "distribution (a CDF per family)",
              "deadline": "seconds allowed for the takeover, twice that for the way back to the "
                          "initial state (default: 20 per VRRP advert interval, at least 10 s; 20 s "
                          "with the seed's timing)", "substrate": SUBSTRATE, "repeat": REPEAT,
              "bound": BOUND}


def _drill(lab, set_, tenant, mode, family, json, plot, deadline, substrate=None, repeat=None, bound=None):
    trials, limit = _guard(commands.repeat_count, repeat), _guard(commands.bound_ms, bound)
    report = _guard(commands.drill, _lab(lab, set_, substrate), tenant, mode, str(family),
                    None if deadline is None else float(deadline), json, plot, _say, trials)
    if isinstance(report, drills.GatewaySeries):
        title, header, rows, below = drills.series.table(report)
        print()
        ui.table(header, rows, title)
        print("\n".join(below))
        over = drills.over_bound(report.trials, limit) if limit else []
    else:
        print(drills.summary(report))
        over = drills.over_bound([report], limit) if limit else []
    for line in over:
        print(f"over the bound: {line}")
    if not report.ok or over:
        raise Exit(code=1)


@task(name="green", help=DRILL_HELP)
def failover_green(c, lab=None, mode="probe", family="both", json=None, plot=None, deadline=None,
                  substrate=None, repeat=None, bound=None, set_=None):
    """The seed's drill: green loses the Internet, blue takes over, then green gets it back."""
    _drill(lab, set_, "green", mode, family, json, plot, deadline, substrate, repeat, bound)


@task(name="blue", help=DRILL_HELP)
def failover_blue(c, lab=None, mode="probe", family="both", json=None, plot=None, deadline=None,
                  substrate=None, repeat=None, bound=None, set_=None):
    """The same on blue (the BACKUP): the gateway must stay on green throughout."""
    _drill(lab, set_, "blue", mode, family, json, plot, deadline, substrate, repeat, bound)


CUT_HELP = {k: v for k, v in DRILL_HELP.items() if k not in ("mode", "family", "bound")} | {
    "hold": "seconds the fault stays on once its effect is seen (default 4; dhcpd notices the cut "
            "after the lab's dhcp.max_response_delay)",
    "deadline": "seconds allowed for the split brain or the takeover, and for one master after the "
                "restore; twice that for DHCP normal and the initial state (default as the other drills)"}


def _cut(lab, set_, mode, node, hold, json, plot, deadline, substrate, repeat):
    trials = _guard(commands.repeat_count, repeat)
    try:
        hold = 4.0 if hold is None else float(hold)
    except ValueError:
        raise Exit(f"--hold must be a number of seconds, not {hold!r}", code=2) from None
    report = _guard(commands.cut_drill, _lab(lab, set_, substrate), mode, node, hold,
                    None if deadline is None else float(deadline), json, plot, _say, trials)
    if isinstance(report, drills.CutSeries):
        title, header, rows, below = drills.series.table(report)
        print()
        ui.table(header, rows, title)
        print("\n".join(below))
    else:
        print(drills.cut_summary(report))
    if not report.ok:
        raise Exit(code=1)


@task(name="vxlan", help=CUT_HELP | {"mode": "underlay (drop the tunnel's UDP between the tenants) or "
                                             "port (take the VXLAN port down on the master's side)"})
def failover_vxlan(c, lab=None, mode="underlay", hold=None, json=None, plot=None, deadline=None,
                   substrate=None, repeat=None, set_=None):
    """The tunnel fails, both gateways stay up: a split brain, named; then one master again and
    the DHCP pair reconciled, no address leased twice."""
    if mode not in drills.cut.VXLAN_MODES:
        raise Exit(f"--mode must be one of {', '.join(drills.cut.VXLAN_MODES)}, not {mode!r}", code=2)
    _cut(lab, set_, mode, None, hold, json, plot, deadline, substrate, repeat)


LINK_ADMIN = ("set the NIC down and up by hand (ip link), not its carrier: its routes go; the drill "
              "shows `invoke provision` repairing it")


@task(name="link", help=CUT_HELP | {"node": "the tenant VM whose NIC goes down (e.g. greenVM)",
                                    "admin": LINK_ADMIN})
def failover_link(c, node, admin=False, lab=None, hold=None, json=None, plot=None, deadline=None,
                  substrate=None, repeat=None, set_=None):
    """A tenant VM's NIC loses carrier (or is set down by hand), then comes back: its tenant is cut
    off (uplink and tunnel share the NIC), the other takes over, then all is as before."""
    _cut(lab, set_, "admin" if admin else "carrier", node, hold, json, plot, deadline, substrate, repeat)


@task(name="build", help={"force": "build again even if the cache holds this recipe's box"})
def box_build(c, force=False):
    """Build the Vagrant box offline (mmdebstrap; cached in /var/cache/vxlab/boxes by recipe)."""
    from lab.vagrant import box

    b = _guard(box.build, box.CACHE, _say, force)
    print(f"{b.name}: {b.file}\nmanifest: {b.manifest}")


@task(name="up", help={"lab": LAB, "upstream": "simulated (default: the lab's own sealed Internet) "
                          "or nat (the real Internet: turns on this host's forwarding and NAT, "
                          "restored by host.down; for laptops, never in CI)"})
def host_up(c, lab=None, upstream="simulated", set_=None):
    """Prepare this host for `vagrant up`: OVS dsw-host, libvirt networks, the upstream.
    Idempotent; run it again after `vagrant up` to seal the VMs' new ports."""
    from lab.vagrant import host

    if upstream not in host.UPSTREAMS:
        raise Exit(f"--upstream must be one of {', '.join(host.UPSTREAMS)}, not {upstream!r}", code=2)
    the_lab = _load(lab, set_)
    if the_lab.hosts:  # every host of the lab: this one here, the others over SSH
        from lab.vagrant import hosts

        _guard(hosts.up, the_lab, _say, None, upstream)
    else:
        _guard(host.prepare, the_lab, _say, None, upstream)


@task(name="down", help={"lab": LAB})
def host_down(c, lab=None, set_=None):
    """Undo host.up (after `vagrant destroy -f`): the host as it was before."""
    from lab.vagrant import host

    the_lab = _load(lab, set_)
    if the_lab.hosts:
        from lab.vagrant import hosts

        removed = _guard(hosts.down, the_lab, _say)
    else:
        removed = _guard(host.cleanup, the_lab, _say)
    print("\n".join(removed) if removed else "nothing to remove")


@task(name="graph", help={"lab": LAB, "format": "svg (default), png or dot",
                          "out": "file to write (default: vxlab-out/<lab name>.<format>, from here)",
                          "live": "also show the running lab: VRRP master, leases, daemons"})
def graph_(c, lab=None, format="svg", out=None, live=False, set_=None):
    """Draw the lab with Graphviz: VMs, switches, VLANs, addresses, VXLAN, VIPs."""
    from lab import graph  # here: only this task needs it

    if format not in graph.FORMATS:
        raise Exit(f"--format must be one of {', '.join(graph.FORMATS)}, not {format!r}", code=2)
    if live:
        elab = _lab(lab, set_)
        the_lab, state = elab.lab, _guard(commands.status, elab)
    else:
        the_lab, state = _load(lab, set_), None
    target = Path(out) if out else OUT / f"{the_lab.name}.{format}"
    if target.is_dir():
        raise Exit(f"--out {out} is a directory: name the file to write", code=2)
    if in_the_way := _file_in_the_way(target.parent):
        raise Exit(f"--out {out}: {in_the_way} is a file, not a directory", code=2)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        print(_guard(graph.draw, the_lab, format, target, state))
    except OSError as e:
        raise Exit(f"cannot write {target}: {e.filename}: {e.strerror}", code=1) from None


@task(name="plot", help={"report": "a drill report (JSON), as a failover drill saves it",
                         "out": "PNG or SVG to write (default: the report's path with .png)",
                         "versus": "another repeated drill's report, drawn beside it (e.g. the other "
                                   "timing profile)"})
def plot_(c, report, out=None, versus=None):
    """Draw a drill report as a timeline: replies per container and family, outages, events;
    a repeated drill's as the distribution of its outages (a CDF per family); with --versus,
    two repeated drills' distributions side by side."""
    from lab import plot  # here: matplotlib is slow to import, and only this task needs it

    src = Path(report)
    data, other = _report(src), (_report(Path(versus)) if versus else None)
    try:
        print(plot.plot(data, Path(out) if out else src.with_suffix(".png"), other))
    except ValueError as e:
        raise Exit(str(e), code=2) from None
    except OSError as e:
        raise Exit(f"cannot write {e.filename or out}: {e.strerror or e}", code=1) from None


def _report(src: Path):
    try:
        return drills.load(src.read_text())
    except OSError as e:
        raise Exit(f"cannot read the drill report {src}: {e.strerror or e}", code=2) from None
    except ValueError as e:  # pydantic's own text spans lines: its first says what is wrong
        raise Exit(f"{src} is not a drill report: {' '.join(str(e).splitlines()[:2])}", code=2) from None


@task(help={"lab": LAB})
def docs(c, lab=None, set_=None):
    """Regenerate the README's pictures: the lab (graph) and a real drill (needs the lab up)."""
    from lab import graph

    elab = _lab(lab, set_)
    print(_guard(graph.draw, elab.lab, "svg", Path("docs/lab.svg"), None))
    _drill(lab, set_, "green", "uplink", "both", None, "docs/drill-green-uplink.png", 20)


ns = Collection(render_, up, down, ls, status, provision_, exec_, shell, logs, capture, doctor,
                graph_, plot_, docs)
ns.add_collection(Collection("test", test_connectivity, test_addressing, test_gateway, test_vxlan,
                             test_internet, test_router))
@task(name="dhcp", help={"lab": LAB, "json": "write the report as JSON to this file",
                         "deadline": "seconds allowed for the new lease", "substrate": SUBSTRATE,
                         "repeat": REPEAT})
def failover_dhcp(c, lab=None, json=None, deadline=30, substrate=None, repeat=None, set_=None):
    """Stop the primary DHCP server: a client still gets a lease, from the secondary."""
    trials = _guard(commands.repeat_count, repeat)
    report = _guard(commands.dhcp_drill, _lab(lab, set_, substrate), float(deadline), json, _say, trials)
    if isinstance(report, drills.DhcpSeries):
        print(drills.series.dhcp_table(report))
    else:
        print(drills.dhcp_summary(report))
    if not report.ok:
        raise Exit(code=1)


ns.add_collection(Collection("failover", failover_green, failover_blue, failover_dhcp, failover_vxlan,
                             failover_link))
ns.add_collection(Collection("box", box_build))
ns.add_collection(Collection("host", host_up, host_down))

# Every task that reads the lab description takes `--set KEY=VALUE`, repeatable.
SET = "KEY=VALUE: change the lab description for this run (repeatable), e.g. --set name=alice"
for _task in (t for coll in (ns, *ns.collections.values()) for t in coll.tasks.values()):
    if "set_" in inspect.signature(_task.body).parameters:
        _task.iterable = [*_task.iterable, "set_"]
        _task.help["set_"] = SET
