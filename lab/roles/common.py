"""Steps the role recipes share."""

from __future__ import annotations

from lab.facts import read
from lab.roles import interfaces
from lab.roles.target import Target

INTERFACES = "/etc/network/interfaces"


def place(t: Target, skip: tuple[str, ...] = (INTERFACES,)) -> set[str]:
    """Put every file but those in `skip`; return the paths whose content or mode changed."""
    changed = {p for p, f in t.files.items() if p not in skip and t.node.put(p, f.text, f.mode)}
    if changed:
        t.did(f"placed {len(changed)} file(s)")
    if any(p.startswith("/etc/systemd/") for p in changed):
        t.node.units_changed()  # units and drop-ins count from then on, for running units too
    return changed


def sysctl(t: Target) -> None:
    t.node.run(["sysctl", "-q", "-p", t.path("/etc/sysctl.conf")])


def own_files(node, command: list[str]) -> list[str]:
    """ifup/ifdown/ifquery as the seed types them, with the node's own interfaces file and
    state directory where those are not at their usual paths (a namespace's)."""
    if command and command[0] in ("ifup", "ifdown", "ifquery") and node.path(INTERFACES) != INTERFACES \
            and not {"-i", "--interfaces", "--state-dir"} & {a.split("=")[0] for a in command}:
        own = ["-i", node.path(INTERFACES), "--state-dir", node.path("/run/network")]
        return [command[0], *own, *command[1:]]
    return command


def ifupdown(t: Target, exclude: tuple[str, ...] = ()) -> None:
    """Bring up the `auto` interfaces of the node's interfaces file, with ifupdown.

    The state directory is the node's own (the default /run/network is shared by all
    namespaces). A changed file is applied by taking the old one down first."""
    args = ["-i", t.path(INTERFACES), "--state-dir", t.path("/run/network"),
            *(f"--exclude={x}" for x in exclude)]
    t.node.run(["mkdir", "-p", t.path("/run/network")])
    new = t.files[INTERFACES]
    old = t.node.read(INTERFACES)
    if old is not None and old != new.text:
        t.node.run(["ifdown", "-a", "--force", *args], check=False)
        t.did("ifdown (interfaces changed)")
    t.node.put(INTERFACES, new.text, new.mode)
    t.rewire()
    before = _state(t)
    t.node.run(["ifup", "-a", *args], timeout=120)
    brought_up = sorted(set(_state(t)) - set(before))
    if brought_up:
        t.did(f"ifup {' '.join(brought_up)}")
    repair(t)


def repair(t: Target) -> None:
    """Put back what the kernel lost of the interfaces file (a link set down, an address
    dropped, a route deleted), piece by piece: nothing else goes down. A link gone altogether
    is brought up again by ifupdown."""
    if INTERFACES not in t.files:
        return
    fact = interfaces.fact(t.node, t.files[INTERFACES].text)
    found = read(lambda _: t.node, [fact])[0]
    drift = [d for d in found if d.fix or d.link]
    t.actions.extend(f"not checked: {d.what}" for d in found if d not in drift)  # unreadable
    if not drift:
        return
    gone = [d.link for d in drift if d.link]
    if gone:
        args = ["-i", t.path(INTERFACES), "--state-dir", t.path("/run/network")]
        t.node.run(["ifdown", "--force", *args, *gone], check=False)
        t.rewire()
        t.node.run(["ifup", *args, *gone], timeout=120)
    for d in drift:
        if d.fix:
            t.node.run(list(d.fix), check=False)
    t.did("repaired: " + "; ".join(d.what for d in drift))
    still = read(lambda _: t.node, [fact])[0]
    if still:
        t.did("still: " + "; ".join(d.what for d in still))


def _state(t: Target) -> list[str]:
    """Interfaces ifupdown holds as up on this node."""
    r = t.node.run(["ifquery", "--state", "--state-dir", t.path("/run/network")], check=False)
    return sorted(line.split("=")[0] for line in r.out.split())


def service(t: Target, svc, config_changed: bool) -> None:
    """Start a daemon unless it runs; when its configuration changed, reload it if it can,
    else restart it."""
    was = t.node.running(svc)
    if was and not config_changed:
        return
    if was and svc.reload:
        t.node.run(svc.reload)
        t.did(f"reloaded {svc.name}")
        return
    t.node.start(svc, restart=was and config_changed)
    t.did(f"{'restarted' if was else 'started'} {svc.name}")
