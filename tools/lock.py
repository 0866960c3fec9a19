"""Regenerate requirements.lock: the exact versions `pip install -e ".[test,lint,dask]"` resolves
today.

Usage, from the repository root:  python tools/lock.py

It makes a throwaway virtual environment, installs the package with its test extra from the
configured index WITHOUT the current lock (so every version is what resolves now within the
floors of pyproject.toml; the dask extra's own pins included), and writes `pip freeze` of that environment, every transitive
dependency included, to requirements.lock. Review the diff, run the test suite installed from the
new lock (`.ci/run` does), and commit it.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
HEADER = """\
# requirements.lock: the exact versions that CI (.ci/run) and the README's install commands use
# (pip constraints format). Install from it with
#     pip install -c requirements.lock -e .           (or -e ".[test]" for the tests)
# `pip install -e .` without it stays possible: any versions within pyproject.toml's floors.
# Made by tools/lock.py, which installs -e ".[test,lint,dask]" into a fresh virtual environment without
# this lock and writes its `pip freeze` (every transitive dependency). To refresh:
#     python tools/lock.py && .ci/run
# Python {python}, {platform}.
"""


def _freeze(venv: Path) -> list[str]:
    """Install the package with its test extra into a fresh venv and return its pinned lines."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[test,lint,dask]"],
                   check=True)
    frozen = subprocess.run([python, "-m", "pip", "freeze", "--exclude-editable"], check=True,
                            capture_output=True, text=True).stdout
    lines = [line.strip() for line in frozen.splitlines()]
    pins = [line for line in lines if line and not line.startswith("#")]
    odd = [line for line in pins if "==" not in line]
    if odd:  # a direct URL or path would not be reproducible on another machine
        raise SystemExit(f"not a name==version pin: {odd}")
    return sorted(pins, key=str.lower)


def main() -> None:
    """Write requirements.lock from a fresh environment's resolution."""
    with tempfile.TemporaryDirectory(prefix="offeropt-lock-") as tmp:
        pins = _freeze(Path(tmp) / "venv")
    import platform

    header = HEADER.format(python=platform.python_version(),
                           platform=f"{platform.system()} {platform.machine()}")
    LOCK.write_text(header + "\n".join(pins) + "\n")
    print(f"wrote {LOCK} ({len(pins)} packages)")


if __name__ == "__main__":
    main()
