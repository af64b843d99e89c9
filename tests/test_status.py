"""The status for people: a big lab's healthy clients folded into one row per tenant."""

from lab import commands


def client(name: str, tenant: str, ipv4: str | None = "192.0.2.20") -> dict:
    return {"node": name, "kind": "namespace", "services": {"dhclient": "running"}, "tenant": tenant,
            "ipv4": ipv4, "gateway4": "192.0.2.222", "slaac": "2001:db8:7::1", "gateway6": "fe80:7::de"}


def test_a_big_labs_healthy_clients_are_one_row_per_tenant_and_the_others_in_full():
    nodes = [{"node": "blueVM", "kind": "namespace", "services": {}, "vrrp": "BACKUP", "vips": []}]
    nodes += [client(f"blueC{i}", "blue", None if i == 7 else "192.0.2.20") for i in range(20)]
    nodes += [client(f"greenC{i}", "green") for i in range(20)]
    st = {"lab": "x", "driver": "netns", "converged": False, "problems": [], "nodes": nodes}
    _, _, rows, _ = commands.status_rows(st)
    assert [r[0] for r in rows] == ["blueVM", "19 clients of blue", "blueC7", "20 clients of green"]
    assert "blueC0 ... blueC19" in rows[1][3] and rows[2][3].startswith("no lease")
    small = {**st, "nodes": nodes[:5]}
    assert len(commands.status_rows(small)[2]) == 5  # a small lab: every node
