"""Same inputs and seed give byte-identical outputs, whatever the chunking and thread knobs.

``assignments`` and ``offers_summary`` (Parquet and CSV) must not change by one byte with
``solver.chunk_size`` or ``solver.threads``, on the affinity path (the fitted propensity and
lifetime value from transactions) and on the ``scores`` path, nor when the BLAS and polars thread
pools are cut to one thread in another process. Timings live in the manifest only: two runs with
the same knobs give the same manifest once every ``seconds`` entry is dropped.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from optimizer.apps.pipeline import run_scenario
from optimizer.apps.synthetic import write_demo_data
from optimizer.core.config import load_scenario
from tests.cpu_features import CPU_FEATURES as __cpu_features__
from tests.tiny_world import write_scenario

FILES = ["assignments.parquet", "assignments.csv", "offers_summary.parquet",
         "offers_summary.csv"]
RULES = {"max_offers_per_customer": 3, "max_offers_per_category": 1, "cooldown_weeks": 4,
         "max_offers_per_window": 6, "window_weeks": 4, "global_budget": 200.0,
         "sensitive_categories": ["INFANT FORMULA", "FAMILY PLANNING"]}
# (chunk_size, threads): whole population, one customer per chunk, odd sizes, thread counts
KNOBS = [(50_000, 0), (1, 1), (7, 2)]


@pytest.fixture(scope="module")
def affinity_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("affinity") / "data"
    write_demo_data(folder, customers=300, offers=20, seed=1)
    return folder


@pytest.fixture(scope="module")
def scores_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scores") / "data"
    write_demo_data(folder, customers=300, offers=20, seed=1, scores_per_customer=8)
    return folder


def _scenario(root: Path, data: Path, chunk_size: int, threads: int) -> Path:
    return write_scenario(root / "scenario.toml", data=str(data), output="run", rules=RULES,
                          solver={"seed": 3, "chunk_size": chunk_size, "threads": threads})


def _run(root: Path, data: Path, chunk_size: int, threads: int) -> tuple[dict[str, bytes], dict]:
    scenario = load_scenario(_scenario(root, data, chunk_size, threads))
    run_scenario(scenario)
    manifest = json.loads((scenario.output / "manifest.json").read_text())
    return {f: (scenario.output / f).read_bytes() for f in FILES}, manifest


def _diff(a: bytes, b: bytes, name: str) -> str:
    """Which columns differ, and by how much (for the failure message)."""
    import io

    import polars as pl

    read = pl.read_parquet if name.endswith(".parquet") else pl.read_csv
    fa, fb = read(io.BytesIO(a)), read(io.BytesIO(b))
    if fa.shape != fb.shape:
        return f"shapes {fa.shape} vs {fb.shape}"
    out = []
    for col in fa.columns:
        if not fa[col].equals(fb[col]):
            if fa[col].dtype.is_float():
                out.append(f"{col} (max abs diff {(fa[col] - fb[col]).abs().max()})")
            else:
                out.append(col)
    return "columns " + ", ".join(out) if out else "same values, different bytes"


def _without_timings(data: Any) -> Any:
    """The manifest without timings (and without the run's own folder paths)."""
    if isinstance(data, dict):
        return {k: _without_timings(v) for k, v in data.items()
                if k not in ("seconds", "data", "output")}
    if isinstance(data, list):
        return [_without_timings(v) for v in data]
    return data


@pytest.mark.parametrize("path", ["affinity", "scores"])
def test_outputs_byte_identical_whatever_chunk_size_and_threads(path, affinity_data, scores_data,
                                                                tmp_path):
    data = affinity_data if path == "affinity" else scores_data
    assert (data / "scores.parquet").exists() == (path == "scores")
    first, manifest = _run(tmp_path / "base", data, *KNOBS[0])
    assert len(first["assignments.csv"].splitlines()) > 100
    for chunk_size, threads in KNOBS[1:]:
        again, manifest_again = _run(tmp_path / f"c{chunk_size}-t{threads}", data, chunk_size,
                                     threads)
        for name in FILES:
            assert again[name] == first[name], (
                f"{name} differs at chunk_size={chunk_size}, threads={threads}: "
                + _diff(first[name], again[name], name))
        # the manifest too, bar timings, memory and the knobs themselves (the bound over the
        # kept candidates was a sum of per-chunk sums: its last digits moved with the chunking)
        assert _decisions(manifest_again) == _decisions(manifest)
    # the same knobs again, in the same process: outputs and the manifest bar timings are equal
    again, manifest_again = _run(tmp_path / "repeat", data, *KNOBS[0])
    assert again == first
    assert _without_timings(manifest_again) == _without_timings(manifest)


def test_outputs_byte_identical_with_one_blas_and_polars_thread(affinity_data, tmp_path):
    """Another process with every thread pool cut to one thread writes the same bytes."""
    first, manifest = _run(tmp_path / "here", affinity_data, *KNOBS[0])
    scenario = _scenario(tmp_path / "single", affinity_data, *KNOBS[0])
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "POLARS_MAX_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "optimizer", "run", str(scenario), "--quiet"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = scenario.parent / "run"
    assert {f: (out / f).read_bytes() for f in FILES} == first
    single = json.loads((out / "manifest.json").read_text())
    assert single["objective"] == pytest.approx(manifest["objective"], rel=1e-12)


def test_a_second_run_into_the_same_folder_gives_the_same_bytes(affinity_data, tmp_path):
    """The plan depends on the inputs and the scenario, not on what the output folder held:
    an earlier run's prices there are not a silent warm start (issue 23, item 4)."""
    root = tmp_path / "same"
    first, manifest = _run(root, affinity_data, *KNOBS[0])
    again, manifest_again = _run(root, affinity_data, *KNOBS[0])
    assert again == first
    assert manifest["warm_start"] is None and manifest_again["warm_start"] is None
    assert _without_timings(manifest_again) == _without_timings(manifest)


def test_warm_start_is_asked_for_and_recorded(affinity_data, tmp_path):
    from click.testing import CliRunner

    from optimizer.cli import main

    _run(tmp_path / "earlier", affinity_data, *KNOBS[0])
    scenario = _scenario(tmp_path / "later", affinity_data, *KNOBS[0])
    earlier = tmp_path / "earlier" / "run"
    done = CliRunner().invoke(main, ["run", str(scenario), "--quiet", "--warm-start", str(earlier)])
    assert done.exit_code == 0, done.output
    manifest = json.loads((tmp_path / "later" / "run" / "manifest.json").read_text())
    assert manifest["warm_start"] == str(earlier)
    assert set(manifest["versions"]) >= {"python", "numpy", "numba", "llvmlite", "ortools",
                                         "polars", "pyarrow", "scipy"}
    missing = CliRunner().invoke(main, ["run", str(scenario), "--warm-start", str(tmp_path)])
    assert missing.exit_code == 2 and "no manifest.json" in missing.output


def _decisions(manifest: dict) -> Any:
    """The manifest without timings, memory and the knobs that must not matter."""
    data = _without_timings(manifest)
    data.pop("memory", None)
    for knob in ("chunk_size", "threads"):
        data["scenario"]["solver"].pop(knob)
    return data


def test_stable_lists_manifest_is_the_same_whatever_chunk_size_and_threads(affinity_data,
                                                                           tmp_path):
    """With rules.change_penalty the objective is summed again after the bonus is taken off:
    in one chunk-independent order, so the manifest's objective, gap and gap over all candidates
    do not move in their last digits with the chunking (they did: a sum of per-chunk sums)."""
    rules = {**RULES, "change_penalty": 0.05, "cooldown_weeks": 0}
    manifests = []
    for chunk_size, threads in KNOBS:
        path = write_scenario(tmp_path / f"c{chunk_size}-t{threads}" / "scenario.toml",
                              data=str(affinity_data), output="run", rules=rules,
                              solver={"seed": 3, "chunk_size": chunk_size, "threads": threads})
        scenario = load_scenario(path)
        run_scenario(scenario)
        manifests.append(json.loads((scenario.output / "manifest.json").read_text()))
    assert manifests[0]["stability"]["previous_slots"] > 100
    for other in manifests[1:]:
        assert _decisions(other) == _decisions(manifests[0])


# sums over many customers or LP rows that BLAS used to add (``a @ b`` of two long vectors:
# OpenBLAS splits the sum over its threads), each printed bit for bit
_BLAS_SUMS = {
    # the BG/NBD fit of the lifetime value: the log-likelihood steers the minimiser, so the
    # fitted parameters and the demo's plan (20,000 customers) followed OPENBLAS_NUM_THREADS
    "bgnbd": """
import numpy as np
from optimizer.scoring.bgnbd import BGNBD, simulate
T = np.full(200_000, 26.0)
x, t_x = simulate(np.random.default_rng(5), T, r=1.2, alpha=7.0, a=0.6, b=3.0)
fit = BGNBD().fit(x, t_x, T)
print(float(fit.log_likelihood_).hex(), *(float(v).hex() for v in fit.params_.values()))
""",
    # the propensity's logistic fit (the affinity path's p_redeem): its gradient Z.T @ r over
    # the training pairs was a threaded OpenBLAS gemv
    "propensity": """
import numpy as np
from optimizer.scoring.propensity import FEATURES, Propensity
rng = np.random.default_rng(5)
n = 200_000
cols = [np.ones(n)] + [rng.normal(size=n) * (k + 1) for k in range(len(FEATURES) - 1)]
eta = -3.0 + 0.3 * sum(cols[1:])
y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
fit = Propensity(rate=1.0).fit(cols, y)
print(float(fit.log_likelihood_).hex(), *(float(v).hex() for v in fit.coef_))
""",
    # the LP's weak-duality bound over its rows (one per sampled customer and category)
    "lp_bound": """
import numpy as np, scipy.sparse as sp
from optimizer.solve.lp import _dual_bound
rng = np.random.default_rng(5)
n = 300_000
matrix = sp.random(n, 50, density=0.01, format="csr", random_state=5)
print(float(_dual_bound(matrix, rng.random(n), rng.random(50), rng.random(n))).hex())
""",
    # the backtest's bootstrap intervals: each resample's weighted sums (weights x customers)
    # were an OpenBLAS gemv, whose bits followed the CPU's kernel (OPENBLAS_CORETYPE)
    "bootstrap": """
import numpy as np
from optimizer.core.bootstrap import bootstrap_ratio
rng = np.random.default_rng(5)
n = 300_000
num, den = rng.normal(size=n) * rng.lognormal(size=n) * 1e3, rng.random(n) * 10
print(*(v.hex() for v in bootstrap_ratio(num, den, seed=3)))
""",
}


def _printed(name: str, threads: str, **extra: str) -> str:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads, **extra}
    done = subprocess.run([sys.executable, "-c", _BLAS_SUMS[name]], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("name", sorted(_BLAS_SUMS))
def test_long_sums_are_the_same_bits_whatever_the_blas_threads(name):
    """One and two OpenBLAS threads give the same bits (docs/contract.md, "Same inputs, same
    bytes"): the sums are numpy's fixed order (optimizer.core.numerics.fixed_dot), not BLAS's."""
    found = {_printed(name, threads) for threads in ("1", "2")}
    assert len(found) == 1, found


# OpenBLAS (a DYNAMIC_ARCH build, as numpy's wheels) picks its kernels by the CPU: Prescott's
# (SSE3) run on any x86-64 CPU and sum in another order than the AVX2 ones (a gemv's bits
# differed); elsewhere, or with another BLAS, the variable is ignored. bgnbd and propensity: their
# sums were the same bits, but scipy's L-BFGS-B calls BLAS itself (ddot, daxpy) and its steps
# followed the kernel; the fits' minimiser (optimizer.scoring.mle.minimize_bounded) calls none
@pytest.mark.parametrize("name", sorted(_BLAS_SUMS))
def test_long_sums_are_the_same_bits_whatever_the_blas_kernel(name):
    here = _printed(name, "1")
    for kernel in ("Prescott", "Haswell"):
        assert _printed(name, "1", OPENBLAS_CORETYPE=kernel) == here, kernel


AVX512 = "X86_V4 AVX512_ICL AVX512_SPR"  # numpy 2.4's names of the AVX-512 groups
# the fits and scores of the affinity path, each printed bit for bit: numpy's exp, log, log1p,
# power, ... (its AVX-512 loops round otherwise than its AVX2 and baseline ones) moved the
# lifetime value's predictions, the clv factor and the repurchase features
_SIMD_FITS = {
    **{name: _BLAS_SUMS[name] for name in ("bgnbd", "propensity")},
    "lifetime_value": """
import hashlib
import numpy as np
from optimizer.scoring.bgnbd import BGNBD, simulate
from optimizer.scoring.clv import clv_factor
from optimizer.scoring.gamma_gamma import GammaGamma, simulate as spend
rng = np.random.default_rng(5)
T = np.full(100_000, 26.0)
x, t_x = simulate(rng, T, r=1.2, alpha=7.0, a=0.6, b=3.0)
fit = BGNBD().fit(x, t_x, T)
seen = x > 0
gg = GammaGamma().fit(x[seen], spend(rng, x[seen], p=6.0, q=4.0, gamma=15.0))
value = fit.predict(52.0, x, t_x, T) * gg.predict(x, np.where(seen, 10.0 + t_x, 0.0))
print(float(gg.log_likelihood_).hex(), *(float(v).hex() for v in gg.params_.values()),
      hashlib.md5(value.tobytes()).hexdigest(),
      hashlib.md5(clv_factor(value + 1.0, 0.7, 0.2, 5.0).tobytes()).hexdigest())
""",
}


@pytest.mark.skipif(not __cpu_features__.get("AVX512F", False),
                    reason="no AVX-512: numpy runs its AVX2 or baseline loops already")
@pytest.mark.parametrize("name", sorted(_SIMD_FITS))
def test_fits_are_the_same_bits_whatever_numpy_simd(name):
    """The fits' parameters and predictions do not follow numpy's SIMD dispatch: the same bits
    with numpy's AVX-512 loops switched off (``NPY_DISABLE_CPU_FEATURES``); their exp, log,
    log1p, logaddexp and powers are the C library's (optimizer.core.numerics)."""
    def printed(**extra: str) -> str:
        env = {**os.environ, **extra}
        done = subprocess.run([sys.executable, "-c", _SIMD_FITS[name]], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout
    assert printed(NPY_DISABLE_CPU_FEATURES=AVX512) == printed()


@pytest.mark.slow
def test_demo_manifest_is_the_same_whatever_the_chunk_size(tmp_path):
    """The demo (20,000 customers) in one chunk and in three: the manifest bar timings, memory
    and the knob itself is the same (``candidates.bound_kept_candidates`` was a sum of
    per-chunk sums and moved in its last digits; the 300-customer worlds above re-score too
    few customers to show it)."""
    write_demo_data(tmp_path / "data", customers=20_000, offers=200, seed=0)
    demo = (Path(__file__).parent.parent / "scenarios" / "demo.toml").read_text()
    text = demo.replace('"../data/demo"', '"data"').replace('"../runs/demo"', '"run"')
    manifests = []
    for chunk_size in (50_000, 7_000):
        path = tmp_path / f"c{chunk_size}.toml"
        path.write_text(text.replace("[solver]", f"[solver]\nchunk_size = {chunk_size}"))
        scenario = load_scenario(path)
        run_scenario(scenario)
        manifests.append(json.loads((scenario.output / "manifest.json").read_text()))
    assert manifests[0]["candidates"]["customers_rescored"] > 1000
    assert _decisions(manifests[1]) == _decisions(manifests[0])
