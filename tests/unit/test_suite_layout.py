"""The suite's own layout: every test directory is a package, so that pytest names each module
(and each area's conftest.py) by its path — tests.network.conftest, tests.shim.shimkit — and
`pytest tests` collects the same tests whatever order it meets the directories in."""

import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _areas() -> list[Path]:
    return sorted(p for p in TESTS.iterdir() if p.is_dir() and any(p.glob("*.py")))


def test_every_test_directory_is_a_package():
    assert (TESTS / "__init__.py").exists()
    missing = [str(d.relative_to(TESTS)) for d in _areas() if not (d / "__init__.py").exists()]
    assert missing == []


def _collected(*paths: Path) -> tuple[int, str]:
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "--collect-only", *map(str, paths)], cwd=TESTS.parent,
                       capture_output=True, text=True, timeout=120)
    ids = [ln for ln in r.stdout.splitlines() if "::" in ln]
    return r.returncode, "\n".join(sorted(ids))


def test_collection_does_not_depend_on_directory_order():
    # backward meets tests/shim's and tests/network's conftest.py before tests/containers'
    # import of the root conftest: the order in which a plain `conftest` module was shadowed
    areas = _areas()
    forward = _collected(*areas)
    backward = _collected(*reversed(areas))
    assert forward[0] == backward[0] == 0
    assert forward[1] == backward[1]
