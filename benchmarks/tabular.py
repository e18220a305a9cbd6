"""Benchmark of the exact tabular recursions (``ebm_ppl.exact.tabular``) against plain NumPy.

Measures, in float64, the time of ``log Z`` (``rho_0 . V_0`` or ``rho_0 . W_0``) and of
``log Z`` plus its gradient in the reward, jitted, for the ``causal`` and ``trajectory`` models on

* sparse grid-local MDPs (``S`` states on a near-square grid, ``A = 5`` actions: stay and the four
  moves, clipped at the borders; ``K = 5`` successors: the intended move with probability 0.8 and
  each of the four other moves' outcomes with 0.05), ``T = 100``;
* dense MDPs (random Dirichlet rows), ``A = 5``, ``T = 50``, beside the "bandwidth floor" (the
  time to read the transition tensor once).

Every cell (one form, size, model, operation and implementation) runs in a fresh subprocess (the
script re-invokes itself with ``--cell``), so its peak resident memory (``ru_maxrss``) is its
own. Each record carries the plain NumPy reference of the same recursion measured in the same run
(value: backward soft Bellman recursion; gradient: the forward occupancy recursion), the ratio
NumPy / JAX, and a check that both give the same ``V_0`` (relative 1e-10) and gradient.

Usage::

    PYTHONPATH=. python benchmarks/tabular.py --quick
    PYTHONPATH=. python benchmarks/tabular.py --out /tmp/bench_tabular.jsonl

One JSON object is printed per measurement, then a final ``summary`` object with the targets
(sparse ``S = 10^6`` value + gradient <= 10 s and <= 3 GB peak per model; dense value within 1.5x
of ``T`` reads of the transition tensor, value + gradient within 1.5x of ``2T`` reads).
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

NUM_ACTIONS = 5
NUM_SUCCESSORS = 5
SPARSE_SIZES = (10**3, 10**4, 10**5, 10**6)
DENSE_SIZES = (10**2, 10**3, 5 * 10**3)
QUICK_SPARSE_SIZES = (10**3, 10**4)
QUICK_DENSE_SIZES = (10**2, 10**3)
MODELS = ("causal", "trajectory")
OPS = ("value", "value_grad")
CHECK_RTOL = 1e-10
SPARSE_TIME_TARGET_S = 10.0
SPARSE_PEAK_TARGET_BYTES = 3e9
READ_RATIO_TARGET = 1.5
MOVES = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))  # stay, up, down, left, right


# ---------------------------------------------------------------------- problems (host side)
def grid_shape(num_states: int) -> tuple[int, int]:
    """The most square ``rows x cols`` grid with exactly ``num_states`` cells."""
    rows = max(d for d in range(1, math.isqrt(num_states) + 1) if num_states % d == 0)
    return rows, num_states // rows


def sparse_problem(num_states: int, seed: int):
    """Grid-local successor lists ``(S, A, K)``, probabilities, ``rho_0`` and reward ``(S,)``."""
    rows, cols = grid_shape(num_states)
    states = np.arange(num_states)
    r, c = states // cols, states % cols
    outcomes = np.stack(
        [
            np.clip(r + dr, 0, rows - 1) * cols + np.clip(c + dc, 0, cols - 1)
            for dr, dc in MOVES
        ],
        axis=-1,
    )  # (S, K): the state each move leads to
    successors = np.ascontiguousarray(
        np.broadcast_to(outcomes[:, None, :], (num_states, NUM_ACTIONS, NUM_SUCCESSORS))
    ).astype(np.int32)
    table = np.where(np.eye(NUM_ACTIONS, NUM_SUCCESSORS, dtype=bool), 0.8, 0.05)
    probs = np.ascontiguousarray(
        np.broadcast_to(table[None], (num_states, NUM_ACTIONS, NUM_SUCCESSORS))
    ).astype(np.float64)
    initial = np.full(num_states, 1.0 / num_states)
    reward = np.random.default_rng(seed).standard_normal(num_states)
    return successors, probs, initial, reward


def dense_problem(num_states: int, seed: int):
    """Dense ``(S, A, S)`` transitions with Dirichlet(1) rows, ``rho_0`` and reward ``(S,)``."""
    rng = np.random.default_rng(seed)
    transitions = rng.standard_exponential((num_states, NUM_ACTIONS, num_states))
    transitions /= transitions.sum(axis=-1, keepdims=True)
    initial = np.full(num_states, 1.0 / num_states)
    reward = np.random.default_rng(seed + 1).standard_normal(num_states)
    return transitions, initial, reward


# ---------------------------------------------------------------------- NumPy references
def _logsumexp_rows(q: np.ndarray) -> np.ndarray:
    top = q.max(axis=-1)
    return top + np.log(np.exp(q - top[..., None]).sum(axis=-1))


class SparseNumpy:
    """Plain NumPy recursions on the ``(S, A, K)`` successor arrays (fancy indexing + bincount)."""

    def __init__(self, successors, probs, initial, reward, horizon, model):
        self.succ, self.probs, self.initial, self.reward = successors, probs, initial, reward
        self.flat_succ = successors.reshape(-1)
        self.horizon, self.model = horizon, model
        self.num_states = initial.shape[0]

    def _step(self, next_values):
        """``(Q_t, tilted_t or None)`` from ``V_{t+1}``."""
        gathered = next_values[self.succ]  # (S, A, K)
        if self.model == "causal":
            return self.reward[:, None] + np.einsum("sak,sak->sa", self.probs, gathered), None
        top = np.where(self.probs > 0, gathered, -np.inf).max(axis=-1)  # per-(s, a) shift
        weights = self.probs * np.exp(gathered - top[..., None])
        sums = weights.sum(axis=-1)
        q = self.reward[:, None] + top + np.log(sums)
        return q, weights / sums[..., None]

    def values(self, keep: bool = False):
        v = np.zeros(self.num_states)
        stored = [v]
        for _ in range(self.horizon):
            v = _logsumexp_rows(self._step(v)[0])
            if keep:
                stored.append(v)
        return stored[::-1] if keep else v

    def value(self):
        v0 = self.values()
        return float(self.initial @ v0), v0

    def value_grad(self):
        """``rho_0 . V_0`` and its gradient in ``r`` (S,): the forward occupancy recursion.

        Only the ``(T + 1, S)`` values are stored; each forward step recomputes ``Q_t`` (and the
        tilted conditionals) from ``V_{t+1}``, as the library's sparse path does.
        """
        values = self.values(keep=True)
        mass = self.initial.copy()
        grad = np.zeros(self.num_states)
        for t in range(self.horizon):
            q, tilted = self._step(values[t + 1])
            sa_mass = mass[:, None] * np.exp(q - values[t][:, None])
            grad += sa_mass.sum(axis=1)
            weights = self.probs if tilted is None else tilted
            pushed = (sa_mass[:, :, None] * weights).reshape(-1)
            mass = np.bincount(self.flat_succ, weights=pushed, minlength=self.num_states)
        return float(self.initial @ values[0]), grad


class DenseNumpy:
    """Plain NumPy recursions on ``P`` reshaped to ``(S*A, S)`` (BLAS matrix-vector products).

    The trajectory column uses one global shift per step (``log P e^{W - max W} + max W``) and
    pushes mass with the tilted ``P~ = P e^{W - m} / sums`` without materialising it:
    ``D_{t+1} = ((D^{sa} / sums) P) * e^{W_{t+1} - m}``.
    """

    def __init__(self, transitions, initial, reward, horizon, model):
        self.num_states, self.num_actions = transitions.shape[:2]
        self.flat = transitions.reshape(-1, self.num_states)
        self.initial, self.reward, self.horizon, self.model = initial, reward, horizon, model

    def _step(self, next_values):
        shape = (self.num_states, self.num_actions)
        if self.model == "causal":
            return self.reward[:, None] + (self.flat @ next_values).reshape(shape), None
        top = next_values.max()
        scaled = np.exp(next_values - top)
        sums = (self.flat @ scaled).reshape(shape)
        return self.reward[:, None] + np.log(sums) + top, (sums, scaled)

    def value(self):
        v = np.zeros(self.num_states)
        for _ in range(self.horizon):
            v = _logsumexp_rows(self._step(v)[0])
        return float(self.initial @ v), v

    def value_grad(self):
        v = np.zeros(self.num_states)
        policies, tilts = [], []
        for _ in range(self.horizon):
            q, tilt = self._step(v)
            v = _logsumexp_rows(q)
            policies.append(np.exp(q - v[:, None]))
            tilts.append(tilt)
        mass = self.initial.copy()
        grad = np.zeros(self.num_states)
        for t in range(self.horizon):
            policy, tilt = policies[-1 - t], tilts[-1 - t]  # stored backwards in time
            sa_mass = mass[:, None] * policy
            grad += sa_mass.sum(axis=1)
            if tilt is None:
                mass = sa_mass.reshape(-1) @ self.flat
            else:
                sums, scaled = tilt
                mass = ((sa_mass / sums).reshape(-1) @ self.flat) * scaled
        return float(self.initial @ v), grad


# ---------------------------------------------------------------------- one cell (subprocess)
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _reset_peak() -> bool:
    """Reset the peak RSS (Linux ``clear_refs`` 5) so the compute phase is measured alone."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _time_calls(fn, repeats):
    start = time.perf_counter()
    out = fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, first, times


def run_cell(spec: dict) -> dict:
    """Build the problem, time one operation, save its output array, report times and memory."""
    form, size, model, op, impl = (spec[k] for k in ("form", "S", "model", "op", "impl"))
    horizon, repeats, seed = spec["T"], spec["repeats"], spec["seed"]
    start = time.perf_counter()
    if form == "sparse":
        successors, probs, initial, reward = sparse_problem(size, seed)
    else:
        transitions, initial, reward = dense_problem(size, seed)
    result: dict = {}

    if impl == "numpy":
        if form == "sparse":
            ref = SparseNumpy(successors, probs, initial, reward, horizon, model)
        else:
            ref = DenseNumpy(transitions, initial, reward, horizon, model)
        build_s = time.perf_counter() - start
        fn = ref.value if op == "value" else ref.value_grad
        device = "numpy"
    else:
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)
        from ebm_ppl.exact.tabular import initial_values
        from ebm_ppl.spaces.tabular import TabularMDP

        if form == "sparse":
            mdp = TabularMDP.from_sparse(successors, probs, initial, horizon)
            del successors, probs
        else:
            mdp = TabularMDP.from_dense(transitions, initial, horizon)
            del transitions
        reward_j = jnp.asarray(reward)
        jax.block_until_ready((mdp, reward_j))
        gc.collect()
        build_s = time.perf_counter() - start
        device = str(jax.devices()[0])

        if op == "read":
            read_sum = jax.jit(lambda p: jnp.sum(p))
            read_matvec = jax.jit(lambda p, v: jnp.einsum("san,n->sa", p, v))
            probe = jnp.asarray(np.random.default_rng(seed + 2).standard_normal(size))
            peak_before = _maxrss_bytes()
            reset = _reset_peak()
            _, first_sum, times_sum = _time_calls(
                lambda: jax.block_until_ready(read_sum(mdp.transitions)), repeats
            )
            _, first_mv, times_mv = _time_calls(
                lambda: jax.block_until_ready(read_matvec(mdp.transitions, probe)), repeats
            )
            tensor_bytes = mdp.transitions.size * mdp.transitions.dtype.itemsize
            result.update(
                sum_median_s=float(np.median(times_sum)),
                sum_times_s=times_sum,
                matvec_median_s=float(np.median(times_mv)),
                matvec_times_s=times_mv,
                first_call_s=first_sum + first_mv,
                median_s=float(min(np.median(times_sum), np.median(times_mv))),
                tensor_bytes=int(tensor_bytes),
                peak_before_compute_bytes=peak_before,
                peak_reset=reset,
                build_s=build_s,
                device=device,
            )
            result["read_gb_per_s"] = tensor_bytes / result["median_s"] / 1e9
            result["peak_rss_compute_bytes"] = _maxrss_bytes()
            result["peak_rss_bytes"] = max(peak_before, result["peak_rss_compute_bytes"])
            return result

        if op == "value":
            compiled = jax.jit(lambda m, r: initial_values(m, r, model=model))

            def fn():
                v0 = jax.block_until_ready(compiled(mdp, reward_j))
                return float(jnp.dot(mdp.initial_dist, v0)), v0
        else:

            def log_z_and_grad(m, r):
                return jax.value_and_grad(
                    lambda rr: jnp.dot(m.initial_dist, initial_values(m, rr, model=model))
                )(r)

            compiled = jax.jit(log_z_and_grad)

            def fn():
                value, grad = jax.block_until_ready(compiled(mdp, reward_j))
                return float(value), grad

    peak_before = _maxrss_bytes()
    rss_before = _rss_bytes()
    reset = _reset_peak()
    (scalar, array), first, times = _time_calls(fn, repeats)
    peak_compute = _maxrss_bytes()
    np.save(spec["result_path"], np.asarray(array))
    result.update(
        value=scalar,
        median_s=float(np.median(times)),
        times_s=times,
        first_call_s=first,
        build_s=build_s,
        rss_after_build_bytes=rss_before,
        peak_before_compute_bytes=peak_before,
        peak_rss_compute_bytes=peak_compute,
        peak_rss_bytes=max(peak_before, peak_compute),
        peak_reset=reset,
        device=device,
    )
    return result


CELL_PREFIX = "CELL_RESULT "


def spawn_cell(spec: dict, timeout: float) -> dict:
    """Run one cell in a fresh interpreter and read back its JSON line."""
    cmd = [sys.executable, os.path.abspath(__file__), "--cell", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(CELL_PREFIX):
            return json.loads(line[len(CELL_PREFIX):])
    return {"error": f"exit code {proc.returncode}: {proc.stderr.strip()[-2000:]}"}


# ---------------------------------------------------------------------- driver
def _mib(nbytes):
    return None if nbytes is None else round(nbytes / 2**20, 1)


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """Largest ``|a - b| / max(|b|, 1)`` over entries (values) — relative for O(1)+ entries."""
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1.0)))


def _grad_error(a: np.ndarray, b: np.ndarray) -> float:
    """``max |a - b| / max |b|`` (gradients hold many tiny occupancy entries)."""
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


class Driver:
    def __init__(self, args):
        self.args = args
        self.records: list[dict] = []
        self.tmp = tempfile.mkdtemp(prefix="bench_tabular_")
        self.ref_history: dict = {}  # (form, model, op) -> (S, single-run seconds)
        self.out = open(args.out, "a") if args.out else None  # noqa: SIM115

    def emit(self, record: dict) -> None:
        record["loadavg_1m"] = round(os.getloadavg()[0], 2)  # other work on the machine
        line = json.dumps(record)
        print(line, flush=True)
        if self.out is not None:
            self.out.write(line + "\n")
            self.out.flush()
        self.records.append(record)

    def spec(self, form, size, model, op, impl, horizon):
        path = os.path.join(self.tmp, f"{form}_{size}_{model}_{op}_{impl}.npy")
        return dict(
            form=form,
            S=size,
            model=model,
            op=op,
            impl=impl,
            T=horizon,
            repeats=self.args.repeats,
            seed=self.args.seed,
            result_path=path,
        )

    def estimate_reference(self, form, model, op, size):
        """Seconds for one NumPy run at ``size``, scaled from the previous size (or None)."""
        previous = self.ref_history.get((form, model, op))
        if previous is None:
            return None
        prev_size, prev_seconds = previous
        power = 1 if form == "sparse" else 2  # work per step: S*A*K sparse, S*A*S dense
        return prev_seconds * (size / prev_size) ** power

    def reference(self, form, size, model, op, horizon):
        estimate = self.estimate_reference(form, model, op, size)
        budget = self.args.ref_budget
        if estimate is not None and estimate * (self.args.repeats + 1) > budget:
            return {
                "impl": "numpy",
                "skipped": True,
                "reason": (
                    f"estimated {estimate:.1f} s per run x {self.args.repeats + 1} runs exceeds "
                    f"the {budget:.0f} s budget (scaled from the previous size)"
                ),
                "estimated_s": estimate,
            }
        spec = self.spec(form, size, model, op, "numpy", horizon)
        out = spawn_cell(spec, timeout=self.args.cell_timeout)
        if "error" not in out:
            self.ref_history[(form, model, op)] = (size, out["first_call_s"])
        out["impl"] = "numpy"
        out["result_path"] = spec["result_path"]
        return out

    def measure(self, form, size, model, op, horizon, read=None):
        spec = self.spec(form, size, model, op, "jax", horizon)
        cell = spawn_cell(spec, timeout=self.args.cell_timeout)
        ref = self.reference(form, size, model, op, horizon) if self.args.reference else None
        record = {
            "name": f"tabular/{form}/{model}/{op}",
            "model": model,
            "form": form,
            "S": size,
            "A": NUM_ACTIONS,
            "K": NUM_SUCCESSORS if form == "sparse" else size,
            "T": horizon,
            "dtype": "float64",
        }
        if form == "sparse":
            record["grid"] = list(grid_shape(size))
        if "error" in cell:
            record["error"] = cell["error"]
        else:
            record.update(
                median_s=cell["median_s"],
                times_s=cell["times_s"],
                repeats=len(cell["times_s"]),
                first_call_s=cell["first_call_s"],
                value=cell["value"],
                peak_rss_mib=_mib(cell["peak_rss_bytes"]),
                peak_rss_compute_mib=_mib(cell["peak_rss_compute_bytes"]),
                peak_build_mib=_mib(cell["peak_before_compute_bytes"]),
                rss_after_build_mib=_mib(cell["rss_after_build_bytes"]),
                build_s=cell["build_s"],
                device=cell["device"],
                peak_rss_bytes=cell["peak_rss_bytes"],
            )
            if read is not None and "median_s" in read:
                reads = horizon if op == "value" else 2 * horizon
                record["read_s"] = read["median_s"]
                record["reads"] = reads
                record["read_ratio"] = cell["median_s"] / (reads * read["median_s"])
                record["read_ratio_target"] = READ_RATIO_TARGET
        if ref is not None:
            reference = {"impl": "numpy"}
            if ref.get("skipped"):
                reference.update(ref)
            elif "error" in ref:
                reference["error"] = ref["error"]
            else:
                reference.update(
                    median_s=ref["median_s"],
                    times_s=ref["times_s"],
                    first_call_s=ref["first_call_s"],
                    value=ref["value"],
                    peak_rss_mib=_mib(ref["peak_rss_bytes"]),
                )
                if "error" not in cell:
                    record["ratio_numpy_over_jax"] = ref["median_s"] / cell["median_s"]
                    mine = np.load(spec["result_path"])
                    theirs = np.load(ref["result_path"])
                    check = {
                        "scalar_rel_err": abs(cell["value"] - ref["value"])
                        / max(abs(ref["value"]), 1.0),
                        "rtol": CHECK_RTOL,
                    }
                    if op == "value":
                        check["values_rel_err"] = _relative_error(mine, theirs)
                        check["pass"] = bool(
                            check["values_rel_err"] <= CHECK_RTOL
                            and check["scalar_rel_err"] <= CHECK_RTOL
                        )
                    else:
                        check["grad_rel_err"] = _grad_error(mine, theirs)
                        check["pass"] = bool(
                            check["grad_rel_err"] <= CHECK_RTOL
                            and check["scalar_rel_err"] <= CHECK_RTOL
                        )
                    record["check"] = check
            record["reference"] = reference
        self.emit(record)
        return record

    def read_floor(self, size, horizon):
        spec = self.spec("dense", size, "none", "read", "jax", horizon)
        cell = spawn_cell(spec, timeout=self.args.cell_timeout)
        record = {
            "name": "tabular/dense/read_floor",
            "form": "dense",
            "S": size,
            "A": NUM_ACTIONS,
            "T": horizon,
            "dtype": "float64",
        }
        if "error" in cell:
            record["error"] = cell["error"]
        else:
            record.update(
                median_s=cell["median_s"],
                sum_median_s=cell["sum_median_s"],
                sum_times_s=cell["sum_times_s"],
                matvec_median_s=cell["matvec_median_s"],
                matvec_times_s=cell["matvec_times_s"],
                tensor_mib=_mib(cell["tensor_bytes"]),
                read_gb_per_s=cell["read_gb_per_s"],
                peak_rss_mib=_mib(cell["peak_rss_bytes"]),
                device=cell["device"],
                note="median_s = min(jit jnp.sum(P), jit einsum('san,n->sa', P, v)) medians",
            )
        self.emit(record)
        return cell

    def run(self):
        args = self.args
        if "sparse" in args.forms:
            for size in args.sizes:
                for model in args.models:
                    for op in OPS:
                        self.measure("sparse", size, model, op, args.sparse_horizon)
        if "dense" in args.forms:
            for size in args.dense_sizes:
                read = self.read_floor(size, args.dense_horizon)
                for model in args.models:
                    for op in OPS:
                        self.measure("dense", size, model, op, args.dense_horizon, read=read)
        self.emit(self.summary())
        if self.out is not None:
            self.out.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def summary(self) -> dict:
        targets = {}
        for rec in self.records:
            if rec.get("name", "").endswith("read_floor") or "median_s" not in rec:
                continue
            if rec["form"] == "sparse" and rec["S"] == 10**6 and rec["name"].endswith("value_grad"):
                key = f"sparse/S=1e6/{rec['model']}/value_grad"
                targets[key + "/time_le_10s"] = {
                    "median_s": rec["median_s"],
                    "pass": rec["median_s"] <= SPARSE_TIME_TARGET_S,
                }
                targets[key + "/peak_le_3GB"] = {
                    "peak_rss_bytes": rec["peak_rss_bytes"],
                    "peak_rss_compute_mib": rec["peak_rss_compute_mib"],
                    "pass": rec["peak_rss_bytes"] <= SPARSE_PEAK_TARGET_BYTES,
                }
            if rec["form"] == "dense" and "read_ratio" in rec:
                op = rec["name"].rsplit("/", 1)[1]
                key = f"dense/S={rec['S']}/{rec['model']}/{op}/read_ratio_le_1.5"
                targets[key] = {
                    "ratio": rec["read_ratio"],
                    "reads": rec["reads"],
                    "pass": rec["read_ratio"] <= READ_RATIO_TARGET,
                }
        checks = [rec["check"]["pass"] for rec in self.records if "check" in rec]
        errors = [rec["name"] + f"/S={rec['S']}" for rec in self.records if "error" in rec]
        return {
            "name": "tabular/summary",
            "targets": targets,
            "all_targets_pass": all(t["pass"] for t in targets.values()) if targets else None,
            "sparse_1e6_measured": any(k.startswith("sparse/S=1e6") for k in targets),
            "checks_run": len(checks),
            "all_checks_pass": all(checks) if checks else None,
            "errors": errors,
            "repeats": self.args.repeats,
            "numpy_reference_budget_s": self.args.ref_budget,
            "python": platform.python_version(),
            "jax": importlib.metadata.version("jax"),
            "numpy": np.__version__,
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
        }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument(
        "--sizes", type=int, nargs="+", help=f"sparse sizes S (default {list(SPARSE_SIZES)})"
    )
    parser.add_argument(
        "--dense-sizes", type=int, nargs="+", help=f"dense sizes S (default {list(DENSE_SIZES)})"
    )
    parser.add_argument(
        "--forms", nargs="+", default=["sparse", "dense"], choices=["sparse", "dense"]
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--repeats", type=int, default=5, help="timed runs after one warm-up")
    parser.add_argument("--sparse-horizon", type=int, default=100)
    parser.add_argument("--dense-horizon", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ref-budget",
        type=float,
        default=90.0,
        help="skip the NumPy reference when its estimated (repeats + 1) runs exceed this (s)",
    )
    parser.add_argument(
        "--no-reference", dest="reference", action="store_false", help="skip NumPy"
    )
    parser.add_argument("--cell-timeout", type=float, default=1800.0)
    parser.add_argument("--out", help="also append the JSON lines to this file")
    parser.add_argument("--cell", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.sizes is None:
        args.sizes = list(QUICK_SPARSE_SIZES if args.quick else SPARSE_SIZES)
    if args.dense_sizes is None:
        args.dense_sizes = list(QUICK_DENSE_SIZES if args.quick else DENSE_SIZES)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.cell:
        result = run_cell(json.loads(args.cell))
        print(CELL_PREFIX + json.dumps(result), flush=True)
        return
    Driver(args).run()


if __name__ == "__main__":
    main()
