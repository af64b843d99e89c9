"""Failover drills: take something away from a tenant (a fault mode), prove the gateway moves
(or stays) with connectivity intact, give it back, prove the lab returns to its initial state;
and the DHCP failover drill. Reports are data (lab/drills/report.py) that round-trip JSON.

    access.py   the running lab as the drills see it (the only place that reaches into it)
    modes.py    the fault modes' registry: probe, uplink, crash; radvd.py is one more
    probes.py   probers on the nodes (ping, TCP stream) and reading them into outages
    watch.py    the timeline, the VIP/flow-mark watch, the VRRP transitions
    series.py   repeated drills: every trial and their distributions
    gateway.py  the failover drill;  dhcp.py  the DHCP failover drill
    cut.py      failover.vxlan (the tunnel cut: a split brain) and failover.link (a NIC down),
                run by the failover drill's runner with steps of their own
"""

from lab.drills import cut, radvd  # noqa: F401  (radvd registers its mode)
from lab.drills.access import DrillError
from lab.drills.dhcp import repeat as dhcp_repeat
from lab.drills.dhcp import run as dhcp
from lab.drills.gateway import FAMILIES, repeat, run
from lab.drills.modes import MODES, Mode, help_text, register
from lab.drills.probes import outages, parse_ping
from lab.drills.report import (
    CutReport,
    DhcpReport,
    GatewayReport,
    Outage,
    Probe,
    cut_summary,
    dhcp_summary,
    summary,
)
from lab.drills.series import CutSeries, DhcpSeries, GatewaySeries, load, over_bound

__all__ = ["FAMILIES", "MODES", "CutReport", "CutSeries", "DhcpReport", "DhcpSeries", "DrillError",
           "GatewayReport", "GatewaySeries", "Mode", "Outage", "Probe", "cut", "cut_summary", "dhcp",
           "dhcp_repeat", "dhcp_summary", "help_text", "load", "outages", "over_bound", "parse_ping",
           "register", "repeat", "run", "summary"]
