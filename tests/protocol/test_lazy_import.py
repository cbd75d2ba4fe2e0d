"""Importing the package does not load the ~220 generated message modules."""

from __future__ import annotations

import subprocess
import sys

from kafkacompat.protocol import request_class


def _loaded_after(statement: str) -> list[str]:
    code = (
        f"{statement}\nimport sys\n"
        "print('\\n'.join(m for m in sys.modules if m.startswith('kafkacompat.protocol.messages.')"
        " or m.startswith('kafkacompat.protocol.internal_topics.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return sorted(filter(None, out.stdout.splitlines()))


def test_package_import_loads_no_message_module() -> None:
    assert _loaded_after("import kafkacompat, kafkacompat.protocol") == []


def _messages(modules: list[str]) -> list[str]:
    # The broker state that handlers share loads the group coordinator's data records
    # (__consumer_offsets codecs, ConsumerProtocolSubscription); request, response and header
    # modules are what must stay lazy.
    return [m for m in modules if m.endswith(("_request", "_response", "_header"))]


def test_dispatch_path_loads_only_headers_and_what_it_serves() -> None:
    loaded = _messages(_loaded_after("import kafkacompat.protocol.framing, kafkacompat.handlers"))
    assert loaded == [
        "kafkacompat.protocol.messages.request_header",
        "kafkacompat.protocol.messages.response_header",
    ]
    # Handler modules, and the messages they use, load on the first request they serve.
    loaded = _messages(
        _loaded_after(
            "import kafkacompat.protocol.framing\nfrom kafkacompat.handlers import HANDLERS\n"
            "HANDLERS[18]"
        )
    )
    assert loaded == [
        "kafkacompat.protocol.messages.api_versions_request",
        "kafkacompat.protocol.messages.api_versions_response",
        "kafkacompat.protocol.messages.request_header",
        "kafkacompat.protocol.messages.response_header",
    ]


def test_message_modules_load_on_first_use() -> None:
    cls = request_class(0)
    assert cls.__name__ == "ProduceRequest"
    assert "kafkacompat.protocol.messages.produce_request" in sys.modules
