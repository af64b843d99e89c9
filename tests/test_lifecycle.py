"""One lifecycle for every substrate: the order of the stages, as a runtime sees them."""

import contextlib
import threading
import time

import pytest

from lab import lifecycle, model
from lab.deployment import Deployment
from lab.roles import Target
from lab.ui import Plain


class FakeRuntime:
    """A Runtime that records what the lifecycle asks of it, in order."""

    poll, timeout = 0.01, 1.0

    def __init__(self, lab: model.Lab) -> None:
        self.lab, self.deployment = lab, Deployment.of(lab, "netns", "netns")
        self.calls: list[str] = []
        self.locked = False
        self._mutex = threading.Lock()

    def record(self, what: str) -> None:
        with self._mutex:
            self.calls.append(what)

    @contextlib.contextmanager
    def lock(self):
        self.locked = True
        yield
        self.locked = False

    def machines(self, progress) -> None:
        assert self.locked
        self.record("machines")

    def target(self, spec, files) -> Target:
        assert self.locked and files is not None
        self.record(f"apply {spec.name}")
        return Target(self.lab, spec, None, files)  # type: ignore[arg-type]

    def containers(self, tenant: str, progress) -> None:
        self.record(f"containers {tenant}")

    def node(self, name: str):
        raise AssertionError("the checks are stubbed")

    def problems(self) -> list[str]:
        self.record("converged?")
        return []


@pytest.fixture
def stubbed(monkeypatch):
    monkeypatch.setattr(lifecycle.roles, "apply", lambda target: [])
    pair = []
    monkeypatch.setattr(lifecycle.checks, "problems", lambda checks, node: pair.append("pair") or [])
    monkeypatch.setattr(lifecycle.checks, "dhcp_pair", lambda lab, node: [])
    return pair


def test_converge_orders_the_stages_the_same_for_every_runtime(stubbed, capsys):
    lab = model.load()
    rt = FakeRuntime(lab)
    lifecycle.converge(rt, Plain())
    calls = rt.calls
    assert calls[0] == "machines" and calls[-1] == "converged?" and stubbed == ["pair"]
    for name, t in lab.tenants.items():  # each tenant: its VM, then its containers, then its server
        assert calls.index(f"apply {t.vm}") < calls.index(f"containers {name}") \
            < calls.index(f"apply {t.dhcp_server.name}")
    clients = [calls.index(f"apply {c}") for t in lab.tenants.values() for c in t.clients]
    servers = [calls.index(f"apply {t.dhcp_server.name}") for t in lab.tenants.values()]
    assert min(clients) > max(servers)
    assert sorted(c.removeprefix("apply ") for c in calls if c.startswith("apply ")) == \
        sorted(n.name for n in lab.nodes())
    out = capsys.readouterr().out
    assert "the DHCP failover pair" in out
    spent = out.rstrip().splitlines()[-1].split("converged; where the time went: ")[1]
    assert [x.rsplit(" ", 2)[0] for x in spent.split(", ")] == [
        "machines", "nodes", "DHCP pair", "clients", "convergence"]


def test_the_tenants_keepalived_waits_for_the_router(stubbed, monkeypatch):
    """A tenant's first health check goes through the router: one that fails costs seconds."""
    lab = model.load()
    rt = FakeRuntime(lab)
    tenant_vms = {t.vm for t in lab.tenants.values()}

    def apply(target):
        if target.spec.name == lab.router.vm:
            time.sleep(0.2)  # a router slower than the tenants
            rt.record("router applied")
        elif target.spec.name in tenant_vms:
            target.upstream_ready()  # where the tenant role starts keepalived
            rt.record(f"keepalived {target.spec.name}")
        return []

    monkeypatch.setattr(lifecycle.roles, "apply", apply)
    lifecycle.converge(rt)
    assert all(rt.calls.index("router applied") < rt.calls.index(f"keepalived {vm}") for vm in tenant_vms)


def test_a_router_that_fails_releases_the_tenants(stubbed, monkeypatch):
    lab = model.load()
    rt = FakeRuntime(lab)

    def apply(target):
        if target.spec.name == lab.router.vm:
            raise RuntimeError("routerVM: ifup failed")
        target.upstream_ready()
        return []

    monkeypatch.setattr(lifecycle.roles, "apply", apply)
    with pytest.raises(RuntimeError, match="ifup failed"):
        lifecycle.converge(rt)  # and does not hang


def test_the_secondary_dhcp_server_starts_after_the_primary(stubbed, monkeypatch):
    """dhcpd tries its partner once as it starts, then only 5 s later: the pair starting at
    the same moment both missed, and both stayed in `recover` 5 s (1 up in 6)."""
    lab = model.load()
    rt = FakeRuntime(lab)
    servers = {t.dhcp_server.role: t.dhcp_server.name for t in lab.tenants.values()}

    def apply(target):
        if target.spec.name == servers["primary"]:
            time.sleep(0.2)  # a primary slower than its partner
            rt.record("primary started")
        elif target.spec.name == servers["secondary"]:
            target.partner_ready()  # where the dhcp role starts a secondary's dhcpd
            rt.record("secondary started")
        return []

    monkeypatch.setattr(lifecycle.roles, "apply", apply)
    lifecycle.converge(rt)
    assert rt.calls.index("primary started") < rt.calls.index("secondary started")


def test_a_primary_that_fails_releases_the_secondary(stubbed, monkeypatch):
    lab = model.load()
    rt = FakeRuntime(lab)
    primary = next(t.dhcp_server.name for t in lab.tenants.values() if t.dhcp_server.role == "primary")

    def containers(tenant, progress):
        if lab.tenants[tenant].dhcp_server.name == primary:
            raise RuntimeError("LXD refused")

    def apply(target):
        target.partner_ready()
        return []

    rt.containers = containers
    monkeypatch.setattr(lifecycle.roles, "apply", apply)
    with pytest.raises(RuntimeError, match="LXD refused"):
        lifecycle.converge(rt)  # and does not hang


def test_converge_waits_for_the_runtimes_problems_and_names_them(stubbed):
    rt = FakeRuntime(model.load())
    rt.problems = lambda: ["greenVM: expected keepalived reports MASTER; found BACKUP"]
    with pytest.raises(TimeoutError, match="keepalived reports MASTER"):
        lifecycle.converge(rt, timeout=0.05)


def test_the_seeds_ifup_runs_with_the_nodes_own_files_where_they_are_elsewhere():
    from lab.roles.common import own_files

    class At:
        def __init__(self, root: str) -> None:
            self.root = root

        def path(self, p: str) -> str:
            return self.root + p

    ns = At("/run/vxlab/x/greenVM")
    assert own_files(ns, ["ifup", "sw-vlan7"]) == [
        "ifup", "-i", "/run/vxlab/x/greenVM/etc/network/interfaces",
        "--state-dir", "/run/vxlab/x/greenVM/run/network", "sw-vlan7"]
    assert own_files(At(""), ["ifup", "sw-vlan7"]) == ["ifup", "sw-vlan7"]  # a VM: as typed
    assert own_files(ns, ["ifup", "-i", "/tmp/f", "x"]) == ["ifup", "-i", "/tmp/f", "x"]
    assert own_files(ns, ["ip", "link"]) == ["ip", "link"]
