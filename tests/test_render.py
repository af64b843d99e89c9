"""Rendering: the default lab gives the seed's files (golden, typed from the seed with its
slips fixed), byte-identical on every run; a changed lab renders consistently; any lab file
(tests/labs.py draws them from the model's types) is refused in words, or rendered with the
templates' lines only and through the real validators (tests/test_validators.py)."""

import dataclasses
import re
import subprocess
import sys
import time
from pathlib import Path

import labs
import pytest
import yaml
from conftest import needs_root
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from test_validators import TOOLS, render_tree, validate

from lab import model, render
from lab.debian import SOURCES_LIST
from lab.deployment import Deployment

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).resolve().parent.parent


def golden_files(substrate: str) -> dict[str, dict[str, Path]]:
    out: dict[str, dict[str, Path]] = {}
    for f in sorted((GOLDEN / substrate).rglob("*")):
        if f.is_file():
            node, *rest = f.relative_to(GOLDEN / substrate).parts
            out.setdefault(node, {})["/" + "/".join(rest)] = f
    return out


@pytest.mark.parametrize("substrate", ["vagrant", "netns"])
def test_default_lab_renders_the_golden_files(substrate):
    """golden/vagrant: the seed's files; golden/netns: only the files the embedded lab's
    form changes (render.Form), the rest being the VMs' own."""
    rendered = render.render(model.load(), substrate)
    golden = golden_files("vagrant")
    for node, files in golden_files(substrate).items():
        golden[node].update(files)
    assert {n: sorted(f) for n, f in rendered.items()} == {n: sorted(f) for n, f in golden.items()}
    for node, files in golden.items():
        for path, expected in files.items():
            got = rendered[node][path]
            assert got.text == expected.read_text(), f"{node}:{path} differs from {expected}"
            assert got.mode == expected.stat().st_mode & 0o777, f"{node}:{path} mode"


def test_the_seeds_files_are_all_there():
    rendered = render.render(model.load(), "vagrant")
    assert set(rendered["routerVM"]) == {
        "/etc/iproute2/rt_tables", "/etc/network/interfaces", "/etc/iptables/rules.v4",
        "/etc/iptables/rules.v6", "/etc/sysctl.conf"}
    for vm in ("blueVM", "greenVM"):
        assert set(rendered[vm]) == {
            "/etc/network/interfaces", "/etc/sysctl.conf", "/etc/radvd.conf",
            "/etc/keepalived/keepalived.conf", "/usr/local/bin/keepalived_check_ipv4.sh",
            "/usr/local/bin/keepalived_check_ipv6.sh", "/usr/local/bin/keepalived_notify.sh",
            "/usr/local/bin/keepalived_notify_fifo.sh",
            # vxlab's own: the VIPs removed when keepalived dies (it cannot when killed)
            "/usr/local/bin/keepalived_release_vips.sh",
            "/etc/systemd/system/keepalived.service.d/vxlab.conf"}
        for script in ("check_ipv4", "check_ipv6", "notify", "notify_fifo", "release_vips"):
            assert rendered[vm][f"/usr/local/bin/keepalived_{script}.sh"].mode == 0o755
    for c in ("blueDHCP", "greenDHCP"):
        assert set(rendered[c]) == {"/etc/network/interfaces", "/etc/default/isc-dhcp-server",
                                    "/etc/dhcp/dhcpd.conf",
                                    # vxlab's own: dhcpd started without the init script's 2 s sleep
                                    "/etc/systemd/system/isc-dhcp-server.service"}


def test_netns_paths_are_per_node():
    lab = model.load()
    files = render.render(lab, "netns")
    conf = files["blueVM"]["/etc/keepalived/keepalived.conf"].text
    assert 'script "/run/vxlab/vxlab/blueVM/usr/local/bin/keepalived_check_ipv4.sh"' in conf
    assert "/run/vxlab/vxlab/greenVM/var/run/keepalived_status" in (
        files["greenVM"]["/usr/local/bin/keepalived_notify.sh"].text)
    assert "ovs_type" not in files["blueVM"]["/etc/network/interfaces"].text


def test_render_task_writes_tree_byte_identical_and_nothing_on_bad_input(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "invoke", "render", *args],
                              cwd=ROOT, capture_output=True, text=True)

    a, b = tmp_path / "a", tmp_path / "b"
    r1, _ = run("--out", str(a)), run("--out", str(b))
    assert r1.returncode == 0, r1.stderr
    assert (a / "routerVM/etc/iptables/rules.v4").is_file()
    assert str(a / "routerVM/etc/iptables/rules.v4") in r1.stdout
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    every = sum(len(files) for files in render.render(model.load(), "vagrant").values())
    assert files_a == files_b and len(files_a) == every
    for f in files_a:
        assert (a / f).read_bytes() == (b / f).read_bytes()
    assert (a / "blueVM/usr/local/bin/keepalived_notify.sh").stat().st_mode & 0o777 == 0o755

    bad = tmp_path / "bad.yaml"
    bad.write_text(model.DEFAULT_LAB.read_text().replace("vrrp_priority: 221", "vrrp_priority: 220"))
    c = tmp_path / "c"
    r3 = run("--out", str(c), "--lab", str(bad))
    assert r3.returncode == 2
    assert "tenants.green.vrrp_priority: must differ" in r3.stderr
    assert not c.exists()


def invoke(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)


def test_render_on_any_file_ends_with_a_tree_or_one_line_quickly(tmp_path):
    """The files that crashed the loader or ate the memory (tests/test_model.py), a directory
    and an endless file: each a one-line reason in a few seconds, nothing written."""
    from test_model import LOADER

    bad = []
    for name, content, *_ in LOADER[:6]:
        f = tmp_path / f"{name.replace(' ', '-')}.yaml"
        f.write_bytes(content if isinstance(content, bytes) else content.encode())
        bad.append(f)
    for lab in [*bad, tmp_path, Path("/dev/zero")]:
        started = time.monotonic()
        r = invoke("render", "--out", str(tmp_path / "out"), "--lab", str(lab))
        assert time.monotonic() - started < 5, lab
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        header, reason = r.stderr.splitlines()
        assert header == "invalid lab description:" and reason.startswith(f"{lab}"), r.stderr
    assert not (tmp_path / "out").exists()


def test_out_naming_a_file_or_a_directory_is_one_line(tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("mine\n")
    for args in (["render", "--out", str(a_file)], ["render", "--out", str(a_file / "sub")],
                 ["graph", "--format", "dot", "--out", str(a_file / "lab.dot")],
                 ["graph", "--format", "dot", "--out", str(tmp_path)]):
        r = invoke(*args)
        assert r.returncode == 2, (args, r.stderr)
        (line,) = r.stderr.splitlines()
        assert line.startswith(f"--out {args[-1]}"), line
    assert a_file.read_text() == "mine\n"


# -- a changed lab renders consistently ----------------------------------------------------

def _changed_lab(third_octet: int, vip_host: int, clients: int, prio: tuple[int, int]):
    data = yaml.safe_load(model.DEFAULT_LAB.read_text())
    net = f"10.{third_octet}.7"
    data["shared_vlan"]["ipv4"] = f"{net}.0/24"
    for name, host, dhcp in (("blue", 220, 250), ("green", 221, 251)):
        t = data["tenants"][name]
        t["svi"]["ipv4"] = f"{net}.{host}/24"
        t["dhcp_server"]["ipv4"] = f"{net}.{dhcp}/24"
        t["clients"] = [f"{name}C{i}" for i in range(clients)]
    data["tenants"]["blue"]["vrrp_priority"], data["tenants"]["green"]["vrrp_priority"] = prio
    data["vrrp"]["instances"]["ipv4"]["vip"] = f"{net}.{vip_host}/24"
    data["dhcp"]["range"] = {"first": f"{net}.10", "last": f"{net}.90"}
    return model.parse(yaml.safe_dump(data))


@settings(max_examples=15, deadline=None)
@given(third_octet=st.integers(0, 255), vip_host=st.integers(100, 200),
       clients=st.integers(0, 4),
       prio=st.tuples(st.integers(1, 254), st.integers(1, 254)).filter(lambda p: p[0] != p[1]))
def test_changed_lab_renders_consistently(third_octet, vip_host, clients, prio):
    lab = _changed_lab(third_octet, vip_host, clients, prio)
    files = render.render(lab, "vagrant")
    vip = str(lab.vrrp.instances.ipv4.vip.ip)
    net = lab.shared_vlan.ipv4
    assert set(files) == {n.name for n in lab.nodes()}
    assert len([n for n in lab.nodes() if n.role == "client"]) == 2 * clients
    for t in lab.tenants.values():
        conf = files[t.vm]["/etc/keepalived/keepalived.conf"].text
        assert f"priority {t.vrrp_priority}\n" in conf
        assert f"                {lab.vrrp.instances.ipv4.vip}\n" in conf
        dhcpd = files[t.dhcp_server.name]["/etc/dhcp/dhcpd.conf"].text
        assert f"option routers {vip};" in dhcpd
        assert f"subnet {net.network_address} netmask 255.255.255.0" in dhcpd
        assert f"gateway {vip}\n" in files[t.dhcp_server.name]["/etc/network/interfaces"].text
        assert f"-s {net} -j MARK --set-mark {t.fwmark}" in files["routerVM"]["/etc/iptables/rules.v4"].text
        assert "192.0.2." not in dhcpd
    router = files["routerVM"]["/etc/network/interfaces"].text
    assert f"post-up ip route replace {net} via 172.16.220.2 dev $IFACE table blue" in router


def test_no_value_of_the_default_lab_is_hard_coded_in_templates():
    """Templates take every address and number from the model: none of the seed's appears."""
    seed_values = ["192.0.2", "172.16.", "2001:db8", "fe80:", "9.9.9.9", "2620:fe", "enp0s6",
                   "sw-vlan7", "C-3PO", "vxlanBlue", "220", "221", "222", " 74", " 76", "519",
                   "520", "9000", "9054", "failover-partner", "VXLAN_7", "vrrp_group"]
    for tpl in render.FILES.rglob("*.j2"):
        code = "\n".join(line for line in tpl.read_text().splitlines()
                         if not line.lstrip().startswith(("#", "!")))
        for v in seed_values:
            assert v not in code, f"{tpl.relative_to(render.FILES)} hard-codes {v!r}"


def test_deployment_roots():
    lab = model.load()
    netns = Deployment.of(lab, "netns")
    assert netns.root(lab, lab.node("blueVM")) == "/run/vxlab/vxlab/blueVM"
    assert netns.root(lab, lab.node("blueC0")) == ""  # LXD container: its own file system
    light = Deployment.of(lab, "netns", "netns")
    assert light.root(lab, lab.node("blueC0")) == "/run/vxlab/vxlab/blueC0"
    assert light.light(lab.node("blueC0")) and not light.light(lab.node("blueVM"))
    assert Deployment.of(lab, "vagrant").root(lab, lab.node("blueVM")) == ""
    other = dataclasses.replace(render.FORMS["netns"], state_dir="/tmp/x/{lab}")
    assert Deployment.of(lab, other).root(lab, lab.node("routerVM")) == "/tmp/x/vxlab/routerVM"


def test_emulated_vms_get_their_own_vrrp_timing_and_nothing_else():
    """The model is not edited: the deployment carries the timing, and the VMs' files differ
    from the seed's in that timing only."""
    lab = model.load()
    slow = Deployment.of(lab, "vagrant", emulated=True)
    assert (slow.timing.advert_int, slow.timing.track) == (lab.vrrp.emulated.advert_int,
                                                           lab.vrrp.emulated.track)
    assert slow.timing.track.interval > lab.vrrp.track.interval
    seed, emulated = render.render(lab, "vagrant"), render.render(lab, slow)
    changed = {(n, p) for n, files in seed.items() for p in files if files[p] != emulated[n][p]}
    assert changed == {(vm, p) for vm in ("blueVM", "greenVM") for p in (
        "/etc/keepalived/keepalived.conf", "/usr/local/bin/keepalived_check_ipv4.sh",
        "/usr/local/bin/keepalived_check_ipv6.sh")}
    conf = emulated["blueVM"]["/etc/keepalived/keepalived.conf"].text
    assert f"advert_int {lab.vrrp.emulated.advert_int}\n" in conf
    no_override = lab.model_copy(update={"vrrp": lab.vrrp.model_copy(update={"emulated": None})})
    assert Deployment.of(no_override, "vagrant", emulated=True).timing == Deployment.of(lab, "vagrant").timing


# -- any lab file: refused in words, or rendered with the templates' lines only ----------------

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]")


def skeleton_environment():
    """Templates rendered with every value replaced by one word: the files' lines as the
    templates make them (loops and conditions still see the lab's values)."""
    env = render.environment()
    env.finalize = lambda value: value if value is SOURCES_LIST else "X"
    return env


def assert_values_add_no_line(lab: model.Lab) -> None:
    skeleton, real = skeleton_environment(), render.environment()
    for substrate in ("vagrant", "netns"):
        deployment = Deployment.of(lab, substrate, "netns" if substrate == "netns" else None)
        for node in lab.nodes():
            files = render.render_node(lab, node, deployment, real)
            lines = render.render_node(lab, node, deployment, skeleton)
            for path, f in files.items():
                where = f"{substrate} {node.name}:{path}"
                assert f.text.count("\n") == lines[path].text.count("\n"), f"{where}: a value added a line"
                assert not CONTROL.search(f.text), f"{where}: a control character"


def parse_or_refusal(data: dict) -> model.Lab | None:
    """The lab, or None if refused in words: one line per problem, never a raw pattern."""
    try:
        return model.parse(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), "drawn.yaml")
    except model.LabError as e:
        msg = str(e)
        assert e.problems and len(msg.splitlines()) == len(e.problems), msg
        assert all(line.startswith("drawn.yaml") for line in msg.splitlines()), msg
        reasons = re.sub(r" \(got .*\)$", "", msg, flags=re.M)  # the input itself may hold anything
        assert "should match pattern" not in reasons and "'^" not in reasons, msg
        return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(labs.lab_files())
def test_any_lab_file_is_refused_in_words_or_rendered_with_the_templates_lines(data):
    lab = parse_or_refusal(data)
    event("accepted" if lab else "refused")
    if lab:
        assert_values_add_no_line(lab)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(labs.lab_files(hostile_values=False))
def test_labs_of_valid_values_render_with_the_templates_lines(data):
    lab = parse_or_refusal(data)
    assume(lab is not None)
    assert_values_add_no_line(lab)


# What the validators' machine has: a drawn lab's sysctl.conf must apply in its namespace, and
# keepalived's script user must exist there.
REAL_SYSCTL = st.sampled_from(["net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter", "net.core.somaxconn",
                               "net.ipv6.conf.all.forwarding", "net.ipv4.tcp_syncookies"])


@needs_root(*TOOLS)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                               HealthCheck.filter_too_much])
@given(labs.lab_files(hostile_values=False, sysctl_keys=REAL_SYSCTL, sysctl_values=st.integers(0, 1),
                      given={("vrrp", "script_user"): st.sampled_from(["root", "nobody"])}))
def test_accepted_labs_pass_the_real_validators(tmp_path_factory, data):
    lab = parse_or_refusal(data)
    assume(lab is not None)
    for substrate in ("vagrant", "netns"):
        root = tmp_path_factory.mktemp(substrate)
        render_tree(lab, substrate, root)
        validate(lab, substrate, root, tmp_path_factory.mktemp("ifstate"))
