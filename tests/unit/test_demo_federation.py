"""The throwaway Synapse's federation option (bot/demo/federation.py): its certificate and config.

That two such servers really federate is tests/e2e/test_federation.py's business."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509

from bot.demo.federation import FederationListener, write_self_signed_certificate
from bot.demo.synapse import ThrowawaySynapse


@pytest.mark.parametrize(("host", "alt"), [
    ("localhost", x509.DNSName("localhost")),
    ("127.0.0.1", x509.IPAddress(ipaddress.ip_address("127.0.0.1"))),
])
def test_the_certificate_names_the_host_and_is_kept_across_restarts(tmp_path: Path, host: str, alt: x509.GeneralName) -> None:
    cert_path, key_path = write_self_signed_certificate(tmp_path, host)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == x509.SubjectAlternativeName([alt])
    assert cert.issuer == cert.subject  # self-signed
    assert key_path.stat().st_mode & 0o077 == 0
    before = cert_path.read_bytes()
    assert write_self_signed_certificate(tmp_path, host) == (cert_path, key_path) and cert_path.read_bytes() == before


def test_a_federating_server_is_named_after_its_listener_and_reaches_loopback(tmp_path: Path) -> None:
    server = ThrowawaySynapse(tmp_path, federation=FederationListener(8448, host="127.0.0.1"))
    assert server.server_name == "127.0.0.1:8448" and server.user_id("a") == "@a:127.0.0.1:8448"
    tmp_path.mkdir(exist_ok=True)
    config = server.homeserver_config()
    assert "federation_domain_whitelist" not in config  # the plain server's "federate with nobody"
    assert config["ip_range_blacklist"] == [] and config["federation_verify_certificates"] is False
    assert config["trusted_key_servers"] == []
    tls = [listener for listener in config["listeners"] if listener["tls"]]
    assert [(listener["port"], listener["resources"][0]["names"]) for listener in tls] == [(8448, ["federation"])]
    assert Path(config["tls_certificate_path"]).exists() and Path(config["tls_private_key_path"]).exists()


def test_a_plain_server_does_not_federate(tmp_path: Path) -> None:
    config = ThrowawaySynapse(tmp_path).homeserver_config()
    assert config["federation_domain_whitelist"] == [] and not any(listener["tls"] for listener in config["listeners"])
    assert "tls_certificate_path" not in config
