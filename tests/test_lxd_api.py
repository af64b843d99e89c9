"""Talking to LXD's API where it is slow: an emulated VM's LXD can be minutes late."""

from __future__ import annotations

import time

import pylxd.exceptions
import pytest
import requests

from lab.containers.container import _again_if_transient, _await


def test_a_late_lxd_operation_is_awaited_again_not_run_again():
    class Wait:
        def __init__(self, late: int) -> None:
            self.late, self.asked = late, 0

        def get(self, params, timeout):
            self.asked += 1
            if self.asked <= self.late:
                raise requests.exceptions.ReadTimeout("busy LXD")
            return type("Reply", (), {"json": lambda _: {"metadata": {"status": "Success"}}})()

    class Operation:
        def __init__(self, late: int) -> None:
            self.wait = Wait(late)

    op = Operation(late=2)
    assert _await(op, timeout=1) == {"status": "Success"} and op.wait.asked == 3
    with pytest.raises(requests.exceptions.ReadTimeout):
        _await(Operation(late=3), timeout=1)


class _Refusal(pylxd.exceptions.LXDAPIException):
    def __init__(self, message: str) -> None:
        super().__init__(None)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _refuse(message: str):
    def call() -> None:
        raise _Refusal(message)
    return call


def test_a_transient_refusal_is_tried_again_up_to_four_times(monkeypatch):
    pauses: list[float] = []
    monkeypatch.setattr(time, "sleep", pauses.append)
    calls: list[int] = []

    def refused_twice() -> str:
        calls.append(1)
        if len(calls) <= 2:
            raise _Refusal("Failed to begin transaction: context deadline exceeded")
        return "done"

    assert _again_if_transient(refused_twice) == "done" and pauses == [1, 3]
    pauses.clear()
    with pytest.raises(RuntimeError, match="^LXD refused: database is locked$"):  # one line for the tasks
        _again_if_transient(_refuse("database is locked"))
    assert pauses == [1, 3, 5]
    pauses.clear()
    with pytest.raises(RuntimeError, match="Instance not found"):
        _again_if_transient(_refuse("Instance not found"))
    assert pauses == []


def test_each_lab_and_tenant_has_its_own_lxd_dir_pool_file_and_mount():
    from lab import model
    from lab.containers.daemon import POOLS
    from lab.containers.lxd_nodes import TenantLxd
    from lab.substrate.netns import NetnsLab

    daemons = [TenantLxd(lab, tenant, NetnsLab(lab)).daemon
               for lab in (model.load(model.DEFAULT_LAB, [f"name={name}"]) for name in ("alice", "bob"))
               for tenant in lab.tenants]
    for what in ("lxd_dir", "pool_file", "pool_dir"):
        paths = [getattr(d, what) for d in daemons]
        assert len(set(paths)) == len(daemons) == 4, paths
    for d in daemons:
        assert d.pool_file.parent.parent == POOLS  # POOLS/<lab>/lxd-<tenant>.btrfs
        assert d.pool_dir.parent == d.lxd_dir.parent  # LXD refuses a pool inside LXD_DIR
        assert d.pool_file.name.removesuffix(".btrfs") == d.lxd_dir.name
