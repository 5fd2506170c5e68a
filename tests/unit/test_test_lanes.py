"""Every connected test carries the ``connected`` marker, so that ``-m "not connected"``
never picks one (it would hang waiting for a stack). Its folder alone is not enough: a module
under ``tests/connected`` without ``pytestmark = pytest.mark.connected`` would slip through."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The tests under tests/connected that the pure lane's marker filter would select.
UNMARKED = [
    "tests/connected",
    "-m",
    "not connected",
    "--collect-only",
    "-q",
    "-p",
    "no:cacheprovider",
]


def test_every_test_under_tests_connected_is_marked_connected() -> None:
    # Collection only, in a pytest of its own: the modules are imported, nothing runs, no
    # stack is needed; the markers are pytest's own view, however a module sets them.
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *UNMARKED],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # 5: nothing selected, as it should be; 0: some test was selected; else: an error.
    unmarked = [line for line in done.stdout.splitlines() if "::" in line]
    assert done.returncode in (0, 5), done.stdout + done.stderr
    assert not unmarked, (
        "tests under tests/connected without the connected marker (add "
        "`pytestmark = pytest.mark.connected` to their module): " + ", ".join(unmarked)
    )


def test_no_two_test_modules_share_a_name() -> None:
    # pytest imports test modules by basename (rootdir-relative, no packages): a second
    # tests/**/test_x.py stops the whole suite at collection, and only the full run (both
    # lanes at once) meets it, not the pure lane.
    names: dict[str, list[str]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert {n: p for n, p in names.items() if len(p) > 1} == {}
