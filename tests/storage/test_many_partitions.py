"""10,000 partitions on disk work under the default ``ulimit -n`` of 1024."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.schemas import REPO


def _limit_fds() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX resource limits")
def test_ten_thousand_partitions_under_ulimit_1024(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.storage.many_partitions_child", str(tmp_path)],
        cwd=REPO,
        preexec_fn=_limit_fds,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    print(result.stdout.strip())
    assert "10000 partitions" in result.stdout
