"""kafkacompat: a broker that speaks Apache Kafka's wire protocol.

``from kafkacompat import EmbeddedKafka`` gives a broker to start from Python (see
:mod:`kafkacompat.embedded`).  It is imported on first use, not here: the command line's
start-up time counts every module ``import kafkacompat`` loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kafkacompat._version import __version__

__all__ = [
    "BrokerStartError",
    "BrokerStopError",
    "EmbeddedKafka",
    "TopicCreationError",
    "__version__",
]

if TYPE_CHECKING:
    from kafkacompat.embedded import (
        BrokerStartError,
        BrokerStopError,
        EmbeddedKafka,
        TopicCreationError,
    )

_LAZY = frozenset({"BrokerStartError", "BrokerStopError", "EmbeddedKafka", "TopicCreationError"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from kafkacompat import embedded

        return getattr(embedded, name)
    raise AttributeError(f"module 'kafkacompat' has no attribute {name!r}")
