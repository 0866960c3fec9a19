"""The demo's data and plan are the same bytes whatever CPU kernel OpenBLAS picks.

OpenBLAS chooses its kernels by CPU (``OPENBLAS_CORETYPE`` forces one: Prescott's plain SSE2,
Haswell's AVX2 and FMA, which OpenBLAS also runs on AMD Zen, SkylakeX's AVX-512), and their
rounding differs: scipy's L-BFGS-B (ddot, daxpy) and dense ``@`` products moved the fitted
lifetime values and propensities, and so the plan, from one machine to another. Each setting
runs ``offeropt demo-data`` and ``offeropt run scenarios/demo.toml`` (a small demo) in its own
process; the data files, ``assignments.parquet`` and ``offers_summary.csv`` must equal those of
the process without the variable, on the fitted (transactions) path and the ``scores`` path.

numpy's own SIMD dispatch is covered too: its AVX-512 ``exp``, ``log``, ``log1p``, ``power``, ...
round differently from its AVX2 and baseline loops, and a CPU without AVX-512 planned another
week; the fits and scores now take those functions from optimizer.core.numerics (the C
library's), and ``NPY_DISABLE_CPU_FEATURES`` (numpy's AVX-512 loops off, as on a CPU without
them) is held to the same bytes on both paths. A setting the CPU cannot run is skipped.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cpu_features import CPU_FEATURES as __cpu_features__

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SIZE = ["--customers", "3000", "--offers", "40", "--seed", "0"]
OUTPUTS = ["assignments.parquet", "offers_summary.csv"]
AVX512 = "X86_V4 AVX512_ICL AVX512_SPR"  # numpy 2.4's names of the AVX-512 groups
SETTINGS = [
    {"OPENBLAS_CORETYPE": "Prescott"},
    {"OPENBLAS_CORETYPE": "Haswell"},
    {"OPENBLAS_CORETYPE": "SkylakeX"},
    {"OPENBLAS_CORETYPE": "Zen"},
    {"NPY_DISABLE_CPU_FEATURES": AVX512},
]
# what the CPU must run for each setting (numpy's names); without AVX-512 there is nothing to
# disable, and forcing SkylakeX's kernels would run instructions the CPU lacks
NEEDS = {"Prescott": [], "Haswell": ["AVX2", "FMA3"], "Zen": ["AVX2", "FMA3"],
         "SkylakeX": ["AVX512F"], AVX512: ["AVX512F"]}
_HAS = __cpu_features__


def _outputs(folder: Path, path: str, env: dict[str, str]) -> dict[str, str]:
    """md5 of every data file and of the run's outputs, written by fresh processes."""
    full = {k: v for k, v in os.environ.items()
            if k not in ("OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES")}
    full.update(env)
    data, run = folder / "data", folder / "run"
    extra = ["--scores-per-customer", "8"] if path == "scores" else []
    scenario = re.sub(r'(?m)^data = .*$', f'data = "{data.as_posix()}"',
                      (ROOT / "scenarios" / "demo.toml").read_text())
    scenario = re.sub(r'(?m)^output = .*$', f'output = "{run.as_posix()}"', scenario)
    (folder / "demo.toml").write_text(scenario)
    for args in (["demo-data", str(data), *SIZE, *extra],
                 ["run", str(folder / "demo.toml"), "--quiet"]):
        done = subprocess.run([sys.executable, "-m", "optimizer", *args], env=full,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    files = sorted(p for p in data.rglob("*") if p.is_file()) + [run / f for f in OUTPUTS]
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module", params=["affinity", "scores"])
def baseline(request, tmp_path_factory) -> tuple[str, dict[str, str]]:
    folder = tmp_path_factory.mktemp(f"base-{request.param}")
    return request.param, _outputs(folder, request.param, {})


@pytest.mark.parametrize("env", SETTINGS, ids=lambda e: "-".join(e.values()).split()[0])
def test_demo_bytes_do_not_follow_the_cpu_kernel(baseline, env, tmp_path, request):
    path, first = baseline
    missing = [f for f in NEEDS[next(iter(env.values()))] if not _HAS.get(f, False)]
    if missing:  # a kernel this CPU cannot run (OpenBLAS would stop on its instructions)
        pytest.skip(f"this CPU lacks {missing}")
    again = _outputs(tmp_path, path, env)
    differ = sorted(name for name in first if again.get(name) != first[name])
    assert not differ, f"{path}: {differ} differ under {env}"
