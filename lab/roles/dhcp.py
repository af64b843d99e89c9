"""blueDHCP, greenDHCP: a static address on VLAN 7 and a DHCP server, one of a failover pair:
ISC dhcpd (the seed's) or Kea (kea-dhcp4 with the HA hook, and kea-ctrl-agent through which
the partners and the lab talk to it), as lab.yaml's `dhcp.server` says."""

from __future__ import annotations

import ipaddress
import json
import re
import shlex

from lab.facts import Fact, dead
from lab.host.wait import until
from lab.model import Lab
from lab.roles.common import ifupdown, place, service
from lab.roles.target import Target
from lab.substrate.base import Node, Result, Service
from lab.substrate.systemd import pid_alive

DHCPD = "/etc/dhcp/dhcpd.conf"
DEFAULTS = "/etc/default/isc-dhcp-server"
UNIT = "/etc/systemd/system/isc-dhcp-server.service"  # systemd nodes: dhcpd without Debian's script
LEASES = "/var/lib/dhcp/dhcpd.leases"  # dhcpd records its failover state here too
TEMPLATES = ("dhcp",)  # and files/dhcp-isc/ or files/dhcp-kea/ (lab/render.py)
DAEMONS = {"dhcpd": "/run/dhcpd.pid"}

# Kea: Debian's paths, which its units use (as user _kea); the namespaces get them per node.
KEA_DHCP4 = "/etc/kea/kea-dhcp4.conf"
KEA_DHCP6 = "/etc/kea/kea-dhcp6.conf"  # dhcp.v6 stateful (files/dhcp-kea6/)
KEA_AGENT = "/etc/kea/kea-ctrl-agent.conf"
KEA_LEASES = "/var/lib/kea/kea-leases4.csv"
KEA_RUN = "/run/kea"  # pid files (KEA_PIDFILE_DIR) and kea-dhcp4's control socket
KEA_LOCKS = "/run/lock/kea"  # the loggers' lock files (KEA_LOCKFILE_DIR)
# Kea names a pid file <config file's base name>.<program>.pid
KEA_DAEMONS = {"kea-dhcp4": f"{KEA_RUN}/kea-dhcp4.kea-dhcp4.pid",
               "kea-ctrl-agent": f"{KEA_RUN}/kea-ctrl-agent.kea-ctrl-agent.pid"}
KEA_DHCP6_PID = {"kea-dhcp6": f"{KEA_RUN}/kea-dhcp6.kea-dhcp6.pid"}


def daemon_pids(lab: Lab) -> dict[str, str]:
    """The DHCP servers' daemons (name: pid file) for the lab's kind of server."""
    if lab.dhcp.server != "kea":
        return DAEMONS
    return KEA_DAEMONS | (KEA_DHCP6_PID if lab.dhcp.v6 == "stateful" else {})


def interfaces_v4(defaults: str) -> list[str]:
    """INTERFACESv4 of /etc/default/isc-dhcp-server: the same file drives every substrate."""
    for line in defaults.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "INTERFACESv4":
            return shlex.split(value)[0].split() if shlex.split(value) else []
    return []


def dhcpd(t: Target) -> Service:
    p = t.path
    pid = p(DAEMONS["dhcpd"])
    return Service("dhcpd", ("dhcpd", "-4", "-f", "-d", "-cf", p(DHCPD), "-lf", p(LEASES),
                             "-pf", pid, *interfaces_v4(t.files[DEFAULTS].text)),
                   unit="isc-dhcp-server", pidfiles=(pid,))


def _kea(t: Target, program: str, config: str, unit: str) -> Service:
    p = t.path
    return Service(program, (program, "-c", p(config)), unit=unit,
                   pidfiles=(p((KEA_DAEMONS | KEA_DHCP6_PID)[program]),),
                   env=(("KEA_PIDFILE_DIR", p(KEA_RUN)), ("KEA_LOCKFILE_DIR", p(KEA_LOCKS))))


def kea_dhcp4(t: Target) -> Service:
    return _kea(t, "kea-dhcp4", KEA_DHCP4, "kea-dhcp4-server")


def kea_dhcp6(t: Target) -> Service:
    return _kea(t, "kea-dhcp6", KEA_DHCP6, "kea-dhcp6-server")


def kea_agent(t: Target) -> Service:
    return _kea(t, "kea-ctrl-agent", KEA_AGENT, "kea-ctrl-agent")


def server(t: Target) -> Service:
    """The daemon that answers DHCP (the one the failover drill stops): dhcpd or kea-dhcp4."""
    return kea_dhcp4(t) if t.lab.dhcp.server == "kea" else dhcpd(t)


def services(t: Target) -> list[Service]:
    if t.lab.dhcp.server != "kea":
        return [dhcpd(t)]
    return [kea_dhcp4(t), kea_agent(t)] + ([kea_dhcp6(t)] if t.lab.dhcp.v6 == "stateful" else [])


def apply(t: Target) -> None:
    kea = t.lab.dhcp.server == "kea"
    changed = place(t)
    ifupdown(t)
    if kea:
        if t.light:  # the units make these on systemd nodes (owned by _kea)
            t.node.run(["mkdir", "-p", *(t.path(d) for d in (KEA_RUN, KEA_LOCKS, "/var/lib/kea"))])
        service(t, kea_dhcp4(t), KEA_DHCP4 in changed)
        if t.lab.dhcp.v6 == "stateful":
            service(t, kea_dhcp6(t), KEA_DHCP6 in changed)
        service(t, kea_agent(t), KEA_AGENT in changed)
        return
    if t.node.read(LEASES) is None:
        t.node.put(LEASES, "")
    restart = bool(changed & {DHCPD, DEFAULTS, *(() if t.light else (UNIT,))})
    starts = restart or not t.node.running(dhcpd(t))
    if starts:
        partner_reachable(t)
    service(t, dhcpd(t), restart)
    if starts:
        until(lambda: listening(t), FIRST_CONTACT_WAIT)


# dhcpd connects to its partner once as it starts, and after a refused or unanswered connection
# only 5 s later (failover.c: "add_timeout +5 dhcp_failover_reconnect"), both staying in
# `recover` meanwhile; the partner's own first connection may be the one that succeeds.
FIRST_CONTACT_WAIT = 5  # s: then it starts anyway, and dhcpd retries as it does


def listening(t: Target) -> bool:
    """Whether this server's dhcpd listens on its failover port (its partner may connect)."""
    port = t.lab.tenants[t.spec.tenant].dhcp_server.port
    r = t.node.run(["ss", "-Hltn", f"sport = :{port}"], check=False)
    return r.ok and bool(r.out.strip())


def partner_reachable(t: Target) -> None:
    """Before the secondary's dhcpd starts: the primary's started and listening (the
    lifecycle's `partner_ready`), and its address answering a ping (ARP resolved, the VXLAN
    carrying), so that the secondary's first connection gets through."""
    me = t.lab.tenants[t.spec.tenant].dhcp_server
    if me.role == "primary":
        return
    t.partner_ready()
    peer = next(x.dhcp_server for x in t.lab.tenants.values() if x.dhcp_server.name != me.name)
    ping = ["ping", "-c", "1", "-W", "1", str(peer.ipv4.ip)]
    until(lambda: t.node.run(ping, check=False).ok, FIRST_CONTACT_WAIT)


# -- facts ------------------------------------------------------------------------------------------

NOT_RUNNING = "dhcpd is not running"
KEA_NOT_RUNNING = "kea-dhcp4 is not running"


def normal(lab: Lab) -> str:
    """The failover state both servers are in when all is well: dhcpd's `normal`, or Kea's
    HA state of its mode (load-balancing, hot-standby)."""
    return lab.dhcp.kea.mode if lab.dhcp.server == "kea" else "normal"


def primary_scope(lab: Lab, address: str | None) -> bool:
    """Whether Kea's primary answers for a client that holds this address when both servers
    run: hot standby, or load balancing with the address in the primary's pool (a client
    gets its scope's pool from either server). Never said for dhcpd (its split is a hash of
    the MAC that vxlab does not compute)."""
    if lab.dhcp.server != "kea" or address is None:
        return False
    if lab.dhcp.kea.mode == "hot-standby":
        return True
    first, last = lab.dhcp.pools()[0]
    return first <= ipaddress.ip_address(address) <= last


def failover(lab: Lab, node: Node) -> Fact[str | None]:
    """The server's own failover state; a stopped server's says NOT_RUNNING (dhcpd's lease
    file keeps its last state). dhcpd's as it records it in its lease file ("my state
    normal"); Kea's HA state as kea-dhcp4 reports it (status-get, through its agent)."""
    if lab.dhcp.server == "kea":
        return _kea_state(lab, node)
    pid, leases = node.path(DAEMONS["dhcpd"]), shlex.quote(node.path(LEASES))
    script = f"{pid_alive(pid)} || {{ echo '{NOT_RUNNING}'; exit 0; }}; grep -o 'my state [a-z-]*' {leases}"
    return Fact(node.name, ("sh", "-c", script), _last_state)


def _last_state(r) -> str | None:
    if NOT_RUNNING in r.out:
        return NOT_RUNNING
    states = re.findall(r"my state (\S+)", r.out)
    return states[-1] if states else None


def agent_url(lab: Lab, name: str) -> str:
    """A Kea server's control agent (the URL its partner's HA hook uses too)."""
    s = lab.tenants[lab.node(name).tenant].dhcp_server
    return f"http://{s.ipv4.ip}:{lab.dhcp.kea.port}/"


def kea_command(lab: Lab, name: str, command: str, service: str = "dhcp4") -> tuple[str, ...]:
    """curl posting a command for kea-dhcp4 (or kea-dhcp6) to the server's agent (its answer:
    a JSON list)."""
    body = json.dumps({"command": command, "service": [service]})
    return ("curl", "-sS", "-m", "3", "-H", "Content-Type: application/json", "-d", body,
            agent_url(lab, name))


def _kea_state(lab: Lab, node: Node, v: int = 4) -> Fact[str | None]:
    program = f"kea-dhcp{v}"
    pid = node.path((KEA_DAEMONS | KEA_DHCP6_PID)[program])
    script = (f"{pid_alive(pid)} || {{ echo '{program} is not running'; exit 0; }}; "
              f"{shlex.join(kea_command(lab, node.name, 'status-get', f'dhcp{v}'))}")
    return Fact(node.name, ("sh", "-c", script), _ha_state)


def failover6(lab: Lab, node: Node) -> Fact[str | None]:
    """kea-dhcp6's HA state (dhcp.v6 stateful), as failover() reads kea-dhcp4's."""
    return _kea_state(lab, node, 6)


def _ha_state(r: Result) -> str | None:
    if m := re.match(r"(kea-dhcp[46] is not running)", r.out):
        return m.group(1)
    try:
        answer = json.loads(r.out)[0]
        return answer["arguments"]["high-availability"][0]["ha-servers"]["local"]["state"]
    except (ValueError, LookupError, TypeError):
        return None


PARTNER_DOWN = "partner-down"


def take_over(lab: Lab, node: Node) -> Fact[str | None]:
    """Tell a Kea server that its partner was stopped: ha-maintenance-start, sent to a server
    whose partner's kea-dhcp4 does not answer, puts it in partner-down at once, serving every
    client (Kea's docs: upgrading from older HA versions). Kea 2.2 tells its partner nothing
    when it stops, unlike dhcpd (shut-down: its partner goes partner-down); left to find out,
    the partner waits for a heartbeat to fail (about once a second) and meanwhile drops the
    replies whose lease update fails. None when done, else why not (Kea's answer)."""
    return Fact(node.name, kea_command(lab, node.name, "ha-maintenance-start"), _took_over)


def _took_over(r: Result) -> str | None:
    try:
        answer = json.loads(r.out)[0]
    except (ValueError, LookupError, TypeError):
        return f"no answer from the control agent: {(r.out + r.err).strip() or f'exit {r.rc}'}"
    return None if answer.get("result") == 0 else str(answer.get("text", answer))


def leases(lab: Lab, node: Node) -> Fact[dict[str, str] | None]:
    """The server's active leases (address: MAC); None if unread. Kea's as kea-dhcp4 holds
    them (lease4-get-all, through its agent); dhcpd's from its lease file, the last entry of
    each address."""
    if lab.dhcp.server == "kea":
        return Fact(node.name, kea_command(lab, node.name, "lease4-get-all"), _kea_leases)
    return Fact(node.name, ("cat", node.path(LEASES)), _dhcpd_leases)


def _dhcpd_leases(r: Result) -> dict[str, str] | None:
    return active_bindings(r.out) if r.ok else None


def active_bindings(text: str) -> dict[str, str]:
    """dhcpd's lease file: address -> MAC of each address whose last record is active."""
    last: dict[str, str] = {}
    for addr, body in re.findall(r"^lease (\S+) \{(.*?)^\}", text, re.M | re.S):
        last[addr] = body
    out = {}
    for addr, body in last.items():
        mac = re.search(r"hardware ethernet (\S+);", body)
        if mac and re.search(r"^\s*binding state active;", body, re.M):
            out[addr] = mac.group(1)
    return out


def _kea_leases(r: Result) -> dict[str, str] | None:
    try:
        answer = json.loads(r.out)[0]
    except (ValueError, LookupError, TypeError):
        return None
    if answer.get("result") == 3:  # "0 IPv4 lease(s) found."
        return {}
    if answer.get("result") != 0:
        return None
    return {lease["ip-address"]: lease["hw-address"] for lease in answer["arguments"]["leases"]
            if lease.get("state", 0) == 0}  # 1: declined, 2: expired and reclaimed


def daemons(lab: Lab, node: Node) -> Fact[list[str]]:
    return dead(node, daemon_pids(lab))
