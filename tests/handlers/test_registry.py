"""ApiVersions can never claim an API that nothing handles."""

from __future__ import annotations

from pathlib import Path

import pytest

from kafkacompat.handlers import HANDLERS
from kafkacompat.protocol import APIS
from kafkacompat.protocol.supported import SUPPORTED_VERSIONS
from tests.schemas import REPO, generate_protocol, require_schemas


def test_every_advertised_api_has_a_handler() -> None:
    missing = [APIS[key].name for key in SUPPORTED_VERSIONS if key not in HANDLERS]
    assert not missing, f"advertised without a handler: {missing}"


def test_no_handler_is_left_unadvertised() -> None:
    # A handler that ApiVersions does not mention is dead code to every client.
    unadvertised = [APIS[key].name for key in HANDLERS if key not in SUPPORTED_VERSIONS]
    assert not unadvertised


def test_advertised_ranges_lie_inside_upstream() -> None:
    for key, (lo, hi) in SUPPORTED_VERSIONS.items():
        info = APIS[key]
        assert info.min_version <= lo <= hi <= info.max_version, info.name


def _specs_with(tmp_path: Path, old: str, new: str) -> Path:
    text = (REPO / "protocol_specs" / "apis.toml").read_text()
    assert old in text
    path = tmp_path / "apis.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        # Claiming a version upstream does not have.
        (
            '[ApiVersions]\nkey = 18\nupstream = "0-4"\nadvertised = "0-4"',
            '[ApiVersions]\nkey = 18\nupstream = "0-4"\nadvertised = "0-5"',
            "outside",
        ),
        # Narrowing a range without saying why.
        (
            '[ApiVersions]\nkey = 18\nupstream = "0-4"\nadvertised = "0-4"',
            '[ApiVersions]\nkey = 18\nupstream = "0-4"\nadvertised = "0-3"',
            "without a reason",
        ),
        # Leaving an API out without a reason.
        (
            'advertised = "none"\nreason = "not implemented"',
            'advertised = "none"',
            "no reason",
        ),
        # Upstream range that does not match the schemas.
        ('upstream = "0-11"', 'upstream = "0-12"', "the schema says"),
    ],
)
def test_generator_refuses_inconsistent_specs(
    tmp_path: Path, old: str, new: str, complaint: str
) -> None:
    schema_dir = require_schemas()
    specs = _specs_with(tmp_path, old, new)
    with pytest.raises(generate_protocol.SpecError, match=complaint):
        generate_protocol.generate(schema_dir, tmp_path / "out", specs)


def test_families_match_the_modules_handles() -> None:
    import importlib

    from kafkacompat.handlers import FAMILIES

    for name, keys in FAMILIES.items():
        module = importlib.import_module(f"kafkacompat.handlers.{name}")
        assert sorted(module.HANDLES) == sorted(keys), name
