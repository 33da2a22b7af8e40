"""How many clients a process holds: the open-file limit raised, a reserve kept."""

from __future__ import annotations

import resource
import subprocess
import sys

from hlgateway.server.capacity import RESERVE, connection_capacity


def test_the_capacity_is_the_open_file_limit_less_the_reserve_unless_configured() -> None:
    assert connection_capacity(0, 20_000) == 20_000 - RESERVE
    assert connection_capacity(0, 1024) == 1024 - RESERVE
    assert connection_capacity(0, 100) == 1  # a tiny limit still lets one client in
    assert connection_capacity(5000, 20_000) == 5000
    assert connection_capacity(0) == resource.getrlimit(resource.RLIMIT_NOFILE)[0] - RESERVE


def test_a_low_soft_limit_is_raised_to_the_hard_one() -> None:
    # In a child process: lowering this process's own limit would starve the other tests.
    script = (
        "import resource\n"
        "from hlgateway.server.capacity import raise_open_files_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "print(raise_open_files_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    returned, soft, hard = (int(v) for v in out)
    assert returned == soft == hard
