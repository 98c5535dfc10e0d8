"""Federation on loopback for the throwaway Synapse: a TLS listener with a self-signed
certificate and the homeserver.yaml keys that let two local servers talk to each other.

Federation is always HTTPS, so a federating test server needs a TLS listener; nothing can
verify a certificate for `localhost`, so the servers skip verification. What else was needed
(Synapse 1.163, measured while building tests/e2e/test_federation.py):

- server names with an explicit port (`localhost:PORT`): no `.well-known` or SRV lookup;
- distinct *hosts*: `m.room.server_acl` matches the server name without its port, so two
  servers both called `localhost:…` cannot be told apart by an ACL (measured: a deny entry
  `127.0.0.1:PORT` let the second server's events in, `127.0.0.1` kept them out). The second server is
  named by an IP literal (`127.0.0.1:PORT`); `*.localhost` does not resolve on this machine;
- loopback allowed for outbound federation: it refuses 127.0.0.0/8 by default, and
  `ip_range_whitelist` does not help a server named by an IP literal (Synapse wraps its
  federation agent in a `BlocklistingAgentWrapper` given the blocklist only: "403: IP address
  blocked"), so the blocklist is emptied (Synapse still adds 0.0.0.0 and ::);
- `trusted_key_servers: []`: each server fetches the other's signing keys directly. The
  `federation` resource alone serves them (`/_matrix/key/v2`) and remote media
  (`/_matrix/federation/v1/media/download`): with it alone, server one downloaded server
  two's media.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FederationListener", "write_self_signed_certificate"]


@dataclass(frozen=True)
class FederationListener:
    """A federation (TLS) listener on 127.0.0.1:`port`; the server is called `host:port`."""

    port: int
    host: str = "localhost"

    @property
    def server_name(self) -> str:
        return f"{self.host}:{self.port}"

    def homeserver_config(self, workdir: Path) -> dict[str, Any]:
        """The keys to merge into homeserver.yaml (listeners are appended by the caller)."""
        cert, key = write_self_signed_certificate(workdir, self.host)
        return {
            "tls_certificate_path": str(cert),
            "tls_private_key_path": str(key),
            "federation_verify_certificates": False,
            "ip_range_blacklist": [],
        }

    def listener(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "tls": True,
            "x_forwarded": False,
            "resources": [{"names": ["federation"], "compress": False}],
        }


def write_self_signed_certificate(workdir: Path, host: str) -> tuple[Path, Path]:
    """A self-signed certificate for `host` (a name or an IP literal) in `workdir`, kept if
    already there (a restarted server keeps its certificate); (certificate, key) paths."""
    # cryptography is a Synapse dependency, like signedjson in synapse.py: bot/ works without it.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = workdir / "federation.crt", workdir / "federation.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
