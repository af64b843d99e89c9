"""The tenant VMs' LXD as the lab reaches it (lab/vagrant/lxd.py): the server's certificate,
read from the VM over SSH, is pinned; a server with another certificate is refused. Against
a local HTTPS server answering as LXD's API root does."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from lab.vagrant import lxd, state


def _cert(d: Path, name: str) -> tuple[Path, Path]:
    crt, key = d / f"{name}.crt", d / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    return crt, key


class _Lxd(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = json.dumps({"type": "sync", "status_code": 200,
                           "metadata": {"auth": "trusted", "api_extensions": []}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def server(tmp_path) -> Iterator[tuple[int, Path]]:
    """An HTTPS server on 127.0.0.1 with its own certificate; (port, that certificate)."""
    crt, key = _cert(tmp_path, "server")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Lxd)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield httpd.server_address[1], crt
    httpd.shutdown()
    httpd.server_close()


def _vm_lxd(tmp_path, monkeypatch, port: int, served_cert: Path) -> lxd.VmLxd:
    """A VmLxd whose VM `reads` `served_cert` as LXD's server.crt."""
    monkeypatch.setattr(state, "KEEP", tmp_path / "keep")
    monkeypatch.setattr(lxd, "PORT", port)
    vm = SimpleNamespace(name="blueVM", endpoint=SimpleNamespace(hostname="127.0.0.1"),
                         read=lambda path: served_cert.read_text() if path == lxd.SERVER_CERT else None)
    return lxd.VmLxd(vm, lxd.ClientCert("testlab").ensure())


def test_the_servers_certificate_read_over_ssh_is_pinned(server, tmp_path, monkeypatch):
    port, crt = server
    api = _vm_lxd(tmp_path, monkeypatch, port, crt)
    assert api.client().trusted
    pinned = tmp_path / "keep/testlab/lxd/server-blueVM.crt"
    assert pinned.read_text() == crt.read_text()
    assert (tmp_path / "keep/testlab/lxd").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "keep/testlab/lxd/client.key").stat().st_mode & 0o777 == 0o600


def test_a_server_with_another_certificate_is_refused(server, tmp_path, monkeypatch):
    port, _ = server
    other, _ = _cert(tmp_path, "other")  # what the VM says LXD's certificate is
    api = _vm_lxd(tmp_path, monkeypatch, port, other)
    with pytest.raises(Exception, match="(?i)fingerprint|connection"):
        api.client()
    assert not api._trusted() and "ingerprint" in repr(api._error) + repr(api._error.__context__)


def test_a_client_certificate_about_to_end_is_made_anew(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "KEEP", tmp_path / "keep")
    cert = lxd.ClientCert("testlab").ensure()
    first = cert.crt.read_text()
    assert lxd.ClientCert("testlab").ensure().crt.read_text() == first  # valid: kept
    subprocess.run(["openssl", "req", "-x509", "-key", str(cert.key), "-days", "1", "-subj", "/CN=old",
                    "-out", str(cert.crt)], check=True, capture_output=True)  # ends within a day
    assert lxd.ClientCert("testlab").ensure().crt.read_text() not in (first, "")
