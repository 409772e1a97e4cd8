"""HTTP tokens as placeholders: what a brokered run holds instead of a token, and the per-run
certificate authority that lets the proxy put the real token in requests to its hosts.

For each credential a run gets whose type declares the hosts it is for (`github_token` →
github.com, api.github.com...; `al creds types`), every secret field is staged as a placeholder
(`alph_` and 40 random characters) and the real value goes to the run's secrets file for the
proxy (`brokering.write_run_secrets`), with the hosts it may be sent to. The proxy terminates
TLS for those hosts (port 443) only, with a certificate made here for exactly them, signed by a
CA made for this run alone, whose key is thrown away once it has signed (nothing can sign with
it again) and whose name constraints confine it to those hosts; the run trusts it beside the
system's roots. A wildcard host (`*.githubusercontent.com`) covers one label, as certificates
do: deeper names are tunnelled untouched.
"""

from __future__ import annotations

import datetime
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from action_llama.credentials.types import BUILTIN, PLACEHOLDERS, brokering
from action_llama.egress.names import PLACEHOLDER_PREFIX, TLS_PORT
from action_llama.egress.rules import parse_entry

if TYPE_CHECKING:
    from action_llama.credentials.refs import CredentialRef
    from action_llama.credentials.store import CredentialStore

#: How long the run's certificates are valid (a run's timeout is far shorter).
VALIDITY = datetime.timedelta(days=2)


def new_placeholder() -> str:
    return PLACEHOLDER_PREFIX + secrets.token_hex(20)


@dataclass
class TokenPlan:
    """What the run holds instead of its tokens, and what the proxy needs to swap them."""

    #: ref → field → placeholder (staged instead of the value).
    substitutes: dict[CredentialRef, dict[str, str]] = field(default_factory=dict)
    #: For the proxy: {"placeholder", "value", "hosts"} of each substituted field.
    table: list[dict[str, object]] = field(default_factory=list)
    #: Host patterns whose TLS the proxy terminates for the run.
    hosts: tuple[str, ...] = ()
    #: The run's CA certificate (PEM), which the run trusts.
    ca_pem: str = ""
    #: The proxy's key and certificate chain for `hosts` (PEM).
    server_pem: str = ""

    @property
    def values(self) -> tuple[str, ...]:
        """The real values (redacted from the run's output, should an upstream echo one)."""
        return tuple(str(row["value"]) for row in self.table)


def _tls_hosts(kind: str) -> list[str]:
    return [r.pattern for e in BUILTIN[kind].hosts for r in parse_entry(e) if TLS_PORT in r.ports]


def plan_tokens(store: CredentialStore, refs: list[CredentialRef]) -> TokenPlan:
    """Placeholders for every secret field of `refs` whose type is brokered with them."""
    plan = TokenPlan()
    hosts: list[str] = []
    for ref in refs:
        if brokering(ref.type) != PLACEHOLDERS or not store.has(ref):
            continue
        kind = BUILTIN[ref.type]
        own = _tls_hosts(ref.type)
        for name, value in store.read(ref).items():
            spec = kind.field(name)
            if spec is None or not spec.secret or not value:
                continue
            placeholder = new_placeholder()
            plan.substitutes.setdefault(ref, {})[name] = placeholder
            plan.table.append({"placeholder": placeholder, "value": value, "hosts": own})
        hosts += [h for h in own if h not in hosts]
    if plan.table:
        plan.hosts = tuple(hosts)
        plan.ca_pem, plan.server_pem = _certificates(plan.hosts)
    return plan


def _certificates(hosts: tuple[str, ...]) -> tuple[str, str]:
    """(the CA's certificate, the server's key + certificate + CA) for `hosts`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "al run egress CA")])
    domains = sorted({h.removeprefix("*.") for h in hosts})
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.NameConstraints([x509.DNSName(d) for d in domains], None), critical=True
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ca_pem = ca.public_bytes(pem).decode()
    return ca_pem, key_pem.decode() + server.public_bytes(pem).decode() + ca_pem
