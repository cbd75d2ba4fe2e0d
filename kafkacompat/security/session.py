"""One connection's session: where it came in, who it is, what software it runs.

Kafka keeps this in ``RequestContext`` (listener name, security protocol, principal, client
address) and in the channel metadata that ApiVersions v3+ fills in (KIP-511: client software
name and version).  The server makes one :class:`Session` per connection; every request
handled on that connection sees the same object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final


class SecurityProtocol(StrEnum):
    """Kafka's ``SecurityProtocol`` names, as listeners spell them."""

    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


@dataclass(frozen=True, slots=True)
class KafkaPrincipal:
    """``type:name``, as Kafka's ``KafkaPrincipal`` prints and ACLs match it."""

    principal_type: str
    name: str

    def __str__(self) -> str:
        return f"{self.principal_type}:{self.name}"


ANONYMOUS: Final = KafkaPrincipal("User", "ANONYMOUS")
"""Kafka's principal for a connection that did not authenticate."""

UNKNOWN_SOFTWARE: Final = "unknown"
"""What Kafka reports for a client that never sent ApiVersions v3+."""


@dataclass(slots=True)
class Session:
    listener_name: str = "PLAINTEXT"
    security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    principal: KafkaPrincipal = ANONYMOUS
    client_host: str = ""
    client_port: int = -1
    client_software_name: str = UNKNOWN_SOFTWARE
    client_software_version: str = UNKNOWN_SOFTWARE
    connection_id: str = field(default="")
    """Kafka's ``local-ip:port-remote-ip:port-index`` string; empty where there is no socket."""
