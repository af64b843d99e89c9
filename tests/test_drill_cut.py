"""The cut drills' pure logic: a split brain named as such, what must hold after healing (no
address twice on VLAN 7, no address leased to two MACs, the VIPs on the master only), dhcpd's
lease file read into its bindings, the cut reports and series through JSON, the task's choices."""

from __future__ import annotations

import pytest

from lab import drills, model
from lab.checks import split_brain
from lab.drills.cut import (
    CUTS,
    VXLAN_MODES,
    Admin,
    Carrier,
    Port,
    Underlay,
    duplicates,
    leased_twice,
    stale_neighbours,
    vips_misplaced,
)
from lab.drills.report import CutReport, Event, cut_summary
from lab.drills.series import CutSeries, load, table
from lab.roles.dhcp import active_bindings

LAB = model.load(model.DEFAULT_LAB)
VIPS = ["192.0.2.222", "fe80:7::de"]


def test_a_split_brain_is_named_with_both_tenants_and_the_vips_they_both_hold():
    assert split_brain(LAB, {"blue": VIPS, "green": VIPS}) == \
        "split brain: blueVM and greenVM both hold 192.0.2.222 and fe80:7::de"
    assert split_brain(LAB, {"blue": ["192.0.2.222"], "green": VIPS}) == \
        "split brain: blueVM and greenVM both hold 192.0.2.222"


@pytest.mark.parametrize("held", [{"blue": [], "green": VIPS}, {"blue": VIPS, "green": []},
                                  {"blue": ["fe80:7::de"], "green": ["192.0.2.222"]},
                                  {"blue": [], "green": []}])
def test_no_split_brain_while_no_vip_is_on_both(held):
    assert split_brain(LAB, held) is None


def test_an_address_on_two_nodes_of_the_vlan_is_a_duplicate_and_one_node_listing_it_twice_is_not():
    found = {"blueVM": ["192.0.2.252", "192.0.2.222", "fe80:7::de"], "greenVM": ["192.0.2.253", "fe80:7::de"],
             "blueC0": ["192.0.2.100", "192.0.2.100"], "greenC0": ["192.0.2.101"]}
    assert duplicates(found) == ["fe80:7::de on blueVM and greenVM"]
    assert duplicates({"a": ["192.0.2.1"], "b": ["192.0.2.2"]}) == []


def test_an_address_bound_to_two_macs_is_leased_twice_by_one_server_or_across_the_two():
    same = {"blueDHCP": {"192.0.2.100": "aa:00:00:00:00:01"},
            "greenDHCP": {"192.0.2.100": "AA:00:00:00:00:01", "192.0.2.101": "aa:00:00:00:00:02"}}
    assert leased_twice(same) == []
    split = {"blueDHCP": {"192.0.2.100": "aa:00:00:00:00:01"},
             "greenDHCP": {"192.0.2.100": "aa:00:00:00:00:03"}}
    assert leased_twice(split) == ["192.0.2.100 leased to aa:00:00:00:00:01 (by blueDHCP) and "
                                   "aa:00:00:00:00:03 (by greenDHCP)"]


LEASES = """\
# The format of this file is documented in the dhcpd.leases(5) manual page.
failover peer "dhcp-failover" state {
  my state normal at 0 2026/11/29 16:00:00;
  partner state normal at 0 2026/11/29 16:00:00;
}
lease 192.0.2.100 {
  starts 0 2026/11/29 16:00:01;
  binding state active;
  next binding state expired;
  hardware ethernet aa:00:00:00:00:01;
}
lease 192.0.2.101 {
  binding state active;
  next binding state expired;
  hardware ethernet aa:00:00:00:00:02;
}
lease 192.0.2.102 {
  binding state free;
  hardware ethernet aa:00:00:00:00:09;
}
lease 192.0.2.101 {
  binding state free;
  rewind binding state active;
  hardware ethernet aa:00:00:00:00:02;
}
"""


def test_the_lease_file_gives_the_active_bindings_its_last_record_of_each_address_wins():
    assert active_bindings(LEASES) == {"192.0.2.100": "aa:00:00:00:00:01"}
    assert active_bindings("") == {}


def test_the_vips_belong_on_the_master_alone():
    assert vips_misplaced(LAB, {"blue": [], "green": VIPS}) == []
    assert vips_misplaced(LAB, {"blue": ["192.0.2.222"], "green": VIPS}) == \
        ["blueVM (the backup) still holds 192.0.2.222"]
    assert vips_misplaced(LAB, {"blue": VIPS, "green": []}) == \
        ["blueVM (the backup) still holds 192.0.2.222 and fe80:7::de", "greenVM (the master) holds no VIP"]


def test_the_cuts_say_what_they_expect():
    assert list(CUTS) == ["underlay", "port", "carrier", "admin"] and VXLAN_MODES == ("underlay", "port")
    assert Underlay.split and Port.split and not Carrier.split
    assert Underlay.overlap_s == Carrier.overlap_s == float("inf")  # both hold the VIPs: expected, named
    assert Admin.needs_repair and not Carrier.needs_repair
    assert Carrier.faults and not Underlay.faults


def a_cut_report(**kw) -> CutReport:
    return CutReport(drill="failover.vxlan", tenant="green", mode="underlay", lab="vxsplit",
                     master="greenVM", expected_gateway="greenVM",
                     events=[Event(2.0, "fault injected: the VXLAN tunnel cut", "greenVM"),
                             Event(5.4, "split brain: blueVM and greenVM both hold 192.0.2.222", "host")],
                     split_brain="split brain: blueVM and greenVM both hold 192.0.2.222", split_brain_s=3.4,
                     one_master_s=0.3, dhcp_normal_s=4.2, healed_s=5.0, **({"ok": True} | kw))


def test_a_cut_report_round_trips_and_its_summary_names_the_figures():
    r = a_cut_report(cut_off={"greenC0": "greenVM's NIC is down"})
    assert CutReport.from_json(r.to_json()) == r
    text = cut_summary(r)
    assert "split brain: blueVM and greenVM both hold 192.0.2.222" in text
    assert "  split brain after the cut: 3.40 s" in text and "  one master after the restore: 0.30 s" in text
    assert "  cut off while the fault was on: greenC0: greenVM's NIC is down" in text
    assert "addresses leased twice: 0" in text


def test_a_cut_series_has_the_cuts_distributions_and_loads_as_a_series():
    trials = [a_cut_report(), a_cut_report(leased_twice=["192.0.2.100 leased to a and b"], ok=False)]
    s = CutSeries.of(trials, 2, drill="failover.vxlan", mode="underlay")
    assert s.split_brain_s.n == 2 and s.split_brain_s.max == 3.4 and s.leased_twice == 1
    assert CutSeries.from_json(s.to_json()) == s
    assert load(s.to_json()).trials[0].drill == "failover.vxlan"
    below = table(s)[3]
    assert "split brain after the cut: p50 3.40" in "\n".join(below)
    assert below[-1].startswith("problem:") or not s.problems


def test_the_tasks_offer_the_cut_drills():
    assert drills.cut.CUTS["carrier"].drill == drills.cut.CUTS["admin"].drill == "link"


def test_a_container_whose_cache_sends_a_vip_to_the_backup_is_stale_one_resolving_it_is_not():
    macs = {"blueVM": "06:00:00:00:00:01", "greenVM": "4a:00:00:00:00:02"}
    caches = {"blueC0": {"192.0.2.222": ("06:00:00:00:00:01", "REACHABLE"),
                         "fe80:7::de": ("4a:00:00:00:00:02", "STALE")},
              "blueC1": {"192.0.2.222": (None, "INCOMPLETE")},
              "greenC0": {"192.0.2.222": ("4a:00:00:00:00:02", "DELAY"),
                          "192.0.2.9": ("06:00:00:00:00:01", "")}}
    assert stale_neighbours(LAB, caches, macs) == ["blueC0: 192.0.2.222 at blueVM's MAC (REACHABLE)"]


def test_a_vms_nic_is_named_to_libvirt_as_the_vagrantfile_makes_it():
    from lab.vagrant import spec

    made = {vm.name: (f"{spec.domain_prefix(LAB)}{vm.name}", vm.nics[0].mac) for vm in spec.vms(LAB)}
    assert spec.lab_nic(LAB, "greenVM") == made["greenVM"] and spec.lab_nic(LAB, "blueVM") == made["blueVM"]
    assert f"{spec.domain_prefix(LAB)}greenVM" in spec.domains(LAB)
    with pytest.raises(ValueError):
        spec.lab_nic(LAB, "greenC0")
