"""vxlab tasks: `invoke --list`. Thin: parse arguments, call the library in lab/."""

from __future__ import annotations

from pathlib import Path

from invoke import Collection, Exit, task

from lab import model
from lab.render import FORMS, render, write


def _load(lab_file: str | None) -> model.Lab:
    try:
        return model.load(lab_file or model.DEFAULT_LAB)
    except model.LabError as e:
        raise Exit(f"invalid lab description:\n{e}", code=2) from None


def _not_yet(what: str, issue: int):
    raise Exit(f"{what}: not built yet (issue #{issue})", code=3)


@task(name="render", help={"lab": "lab description (default: lab.yaml)",
            "substrate": "vagrant (the VMs' files) or netns (the embedded lab's)",
            "out": "directory to write DIR/<node>/<path on the node> into"})
def render_(c, out, lab=None, substrate="vagrant"):
    """Render every node's files from the lab description."""
    if substrate not in FORMS:
        raise Exit(f"--substrate must be one of {', '.join(FORMS)}, not {substrate!r}", code=2)
    files = render(_load(lab), substrate)  # validated and rendered before anything is written
    for path in write(files, Path(out)):
        print(path)


@task
def up(c):
    """Build and provision the embedded lab, wait until it has converged."""
    _not_yet("up", 3)


@task
def down(c):
    """Remove everything the lab made."""
    _not_yet("down", 3)


@task
def status(c):
    """Nodes, containers, daemons, VRRP state, leases."""
    _not_yet("status", 3)


@task(name="exec")
def exec_(c, node):
    """Run a command on a node: invoke exec NODE -- CMD..."""
    _not_yet("exec", 3)


@task(name="provision")
def provision_(c):
    """Converge a running lab to the lab description."""
    _not_yet("provision", 3)


@task(name="connectivity")
def test_connectivity(c):
    """Every check of the seed's "Check the results"."""
    _not_yet("test.connectivity", 4)


@task(name="green")
def failover_green(c):
    """The failover drill: green loses the Internet, blue takes over."""
    _not_yet("failover.green", 4)


@task(name="build")
def box_build(c):
    """Build the Vagrant box offline."""
    _not_yet("box.build", 5)


ns = Collection(render_, up, down, status, exec_, provision_)
ns.add_collection(Collection("test", test_connectivity))
ns.add_collection(Collection("failover", failover_green))
ns.add_collection(Collection("box", box_build))
