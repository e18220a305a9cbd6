r"""Plots for Bayesian reward inference: chain diagnostics, reward maps, occupancy checks.

Every function takes the ArviZ 1.x :class:`xarray.DataTree` that the inference layer returns and
gives back matplotlib figures; nothing here calls ``plt.show`` and nothing closes a figure it did
not create, so the functions work under any backend (``Agg`` included).

* :func:`plot_chains` — trace/marginal and rank plots of the parameter sites (arviz_plots'
  ``plot_trace_dist`` and ``plot_rank``), returned as :class:`ChainFigures`.
* :func:`plot_reward_grid` — heat maps of the posterior mean and sd of the (canonical) state reward
  on the grid of a grid problem, next to the true reward when the tree carries it.
* :func:`plot_occupancy` — posterior-predictive state occupancy (mean and an equal-tailed band over
  draws) against the demonstrations' empirical occupancy (a posterior-predictive check).
* :func:`save_plots` — writes the PNGs that apply to a tree and closes what it created.

Layout of the DataTree read here (made by :mod:`ebm_ppl.inference`):

* ``posterior``: parameter sites ``(chain, draw, *param_dims)`` (e.g. ``theta``,
  ``rationality``); ``reward`` and ``reward_canonical``
  ``(chain, draw, state[, action[, next_state]])``.
* ``sample_stats``: ``diverging`` etc. (``diverging`` is drawn as a rug on the trace plots).
* ``posterior_predictive``: ``state_occupancy`` ``(chain, draw, state)``.
* ``constant_data``: ``empirical_occupancy`` ``(state,)``; optional ``true_reward`` (the reward
  table's dims without chain and draw).
* ``observed_data``: ``demos`` ``(demo, step, column)``.
* root attributes: ``problem``, ``likelihood``, ``method``; ``parameter_sites`` (optional);
  ``grid_shape = [rows, cols]`` for grid problems (row-major state index:
  ``state = row * cols + col``).

Figures come from :mod:`matplotlib.pyplot` (as arviz_plots' own do), so a caller that makes many
should close them with ``plt.close(fig)``; :func:`save_plots` does that for the ones it makes.

Canonical rewards (THEORY §1.6, §9.1): the reward is identified only up to a constant shift (and,
for state-action rewards, potential shaping). For a state-only reward the EPIC canonicalisation
under a uniform coverage distribution is "subtract the mean over states", so the reward maps show
every table — each posterior draw and the truth — with its mean over states subtracted.

References:
    THEORY.md §1.6 (non-identifiability), §7.1 (diagnostics), §9.1 (EPIC canonicalisation).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "ChainFigures",
    "plot_chains",
    "plot_occupancy",
    "plot_reward_grid",
    "save_plots",
]

_SAMPLE_DIMS = ("chain", "draw")
_DERIVED_SITES = ("reward", "reward_canonical")
"""Posterior variables that are deterministic tables, not parameter sites (left out of
:func:`plot_chains` unless named)."""


class ChainFigures(NamedTuple):
    """The two figures of :func:`plot_chains`.

    Attributes:
        trace: one row per parameter site; left the marginal distribution per chain, right the
            trace (draw vs value per chain), divergent draws marked as a rug.
        rank: one panel per scalar parameter: the fractional-rank Δ-ECDF of each chain with the
            multi-chain uniformity test's p-value (arviz_plots ``plot_rank``, method ``"mtc_c"``).
    """

    trace: Figure
    rank: Figure


# --------------------------------------------------------------------------------------------
# DataTree access and validation
# --------------------------------------------------------------------------------------------


def _check_tree(idata: object, caller: str) -> xr.DataTree:
    if not isinstance(idata, xr.DataTree):
        raise TypeError(
            f"{caller}: idata must be an xarray.DataTree (ArviZ 1.x inference data), "
            f"got {type(idata).__name__}"
        )
    return idata


def _group(idata: xr.DataTree, name: str, caller: str) -> xr.Dataset:
    if name not in idata.children:
        raise ValueError(
            f"{caller}: the DataTree has no '{name}' group; groups present: "
            f"{sorted(idata.children)}"
        )
    return idata[name].to_dataset()


def _variable(idata: xr.DataTree, group: str, name: str, caller: str) -> xr.DataArray:
    ds = _group(idata, group, caller)
    if name not in ds.data_vars:
        raise ValueError(
            f"{caller}: the '{group}' group has no variable '{name}'; variables present: "
            f"{sorted(ds.data_vars)}"
        )
    return ds[name]


def _has(idata: xr.DataTree, group: str, name: str) -> bool:
    return group in idata.children and name in idata[group].data_vars


def _draws(da: xr.DataArray, caller: str) -> np.ndarray:
    """Values with the sample dims flattened into the leading axis: ``(num_draws, *rest)``."""
    sample_dims = [d for d in _SAMPLE_DIMS if d in da.dims]
    if not sample_dims:
        raise ValueError(
            f"{caller}: '{da.name}' has dims {da.dims}; expected the sample dims "
            f"{_SAMPLE_DIMS} first"
        )
    rest = [d for d in da.dims if d not in sample_dims]
    values = np.asarray(da.transpose(*sample_dims, *rest).values, dtype=float)
    return values.reshape(-1, *values.shape[len(sample_dims) :])


def _grid_shape(idata: xr.DataTree, caller: str, num_states: int | None = None):
    """``(rows, cols)`` from the root attribute ``grid_shape``, or None for non-grid problems."""
    shape = idata.attrs.get("grid_shape")
    if shape is None:
        return None
    flat = np.asarray(shape).ravel()
    if flat.size != 2 or not np.all(flat > 0) or not np.all(flat == np.round(flat)):
        raise ValueError(
            f"{caller}: attrs['grid_shape'] must be [rows, cols] with positive integers, "
            f"got {shape!r}"
        )
    rows, cols = int(flat[0]), int(flat[1])
    if num_states is not None and rows * cols != num_states:
        raise ValueError(
            f"{caller}: attrs['grid_shape'] = [{rows}, {cols}] has {rows * cols} cells but the "
            f"data have {num_states} states"
        )
    return rows, cols


_AVERAGED = {1: "", 2: "actions", 3: "actions and next states"}


def _state_table(values: np.ndarray, name: str, caller: str, *, batched: bool):
    """Average a ``(..., S[, A[, S']])`` table over its trailing axes.

    Returns:
        ``(table (..., S), what)`` with ``what`` naming the axes averaged over ("" if none).
    """
    table_ndim = values.ndim - (1 if batched else 0)
    if table_ndim not in _AVERAGED:
        lead = "(chain, draw, " if batched else "("
        raise ValueError(
            f"{caller}: '{name}' must have dims {lead}state[, action[, next_state]]), "
            f"got shape {values.shape}"
        )
    axis = tuple(range(values.ndim - table_ndim + 1, values.ndim))
    return (values.mean(axis=axis) if axis else values), _AVERAGED[table_ndim]


def _subtitle(idata: xr.DataTree) -> str:
    parts = [
        f"{key} {idata.attrs[key]}"
        for key in ("problem", "likelihood", "method")
        if key in idata.attrs
    ]
    return ", ".join(parts)


def _new_figure(**kwargs) -> Figure:
    import matplotlib.pyplot as plt

    return plt.figure(layout="constrained", **kwargs)


def _close(fig: Figure) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


def _heatmap(ax: Axes, grid: np.ndarray, title: str, **imshow_kwargs):
    """``imshow`` of a ``(rows, cols)`` array with row 0 on top, integer cell ticks."""
    image = ax.imshow(grid, origin="upper", interpolation="nearest", **imshow_kwargs)
    ax.set_title(title)
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    rows, cols = grid.shape
    if cols <= 20:
        ax.set_xticks(range(cols))
    if rows <= 20:
        ax.set_yticks(range(rows))
    return image


# --------------------------------------------------------------------------------------------
# Chains
# --------------------------------------------------------------------------------------------


def _parameter_names(posterior: xr.Dataset, attrs, var_names, caller: str) -> list[str]:
    if var_names is None:
        recorded = attrs.get("parameter_sites", [])  # a list, or an array after netCDF
        recorded = [recorded] if isinstance(recorded, str) else np.ravel(recorded).tolist()
        names = [name for name in recorded if name in posterior.data_vars]
        if names:
            return names
        names = [name for name in posterior.data_vars if name not in _DERIVED_SITES]
        if not names:
            raise ValueError(
                f"{caller}: the 'posterior' group has no parameter sites besides "
                f"{list(_DERIVED_SITES)}; variables present: {sorted(posterior.data_vars)}"
            )
        return [str(name) for name in names]
    names = [var_names] if isinstance(var_names, str) else list(var_names)
    if not names:
        raise ValueError(f"{caller}: var_names is empty")
    missing = [name for name in names if name not in posterior.data_vars]
    if missing:
        raise ValueError(
            f"{caller}: var_names {missing} are not in the 'posterior' group; variables "
            f"present: {sorted(posterior.data_vars)}"
        )
    return names


def _with_index_coords(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with integer coordinates ``0..n-1`` on every dim that has none."""
    missing = {dim: np.arange(size) for dim, size in ds.sizes.items() if dim not in ds.coords}
    return ds.assign_coords(missing) if missing else ds


def _split_single_chain(posterior: xr.Dataset, caller: str) -> xr.DataTree:
    """Two pseudo-chains from the halves of one chain (as split R-hat does)."""
    num_draws = posterior.sizes["draw"]
    half = num_draws // 2
    if half < 2:
        raise ValueError(
            f"{caller}: a rank plot needs at least 2 chains, or one chain with at least 4 "
            f"draws to split in halves; got 1 chain of {num_draws} draws"
        )
    first = posterior.isel(chain=0, draw=slice(0, half))
    second = posterior.isel(chain=0, draw=slice(half, 2 * half))
    second = second.assign_coords(draw=first["draw"].values)
    split = xr.concat([first, second], dim="chain").assign_coords(chain=[0, 1])
    return xr.DataTree.from_dict({"posterior": split})


def plot_chains(
    idata: xr.DataTree,
    var_names: str | Sequence[str] | None = None,
    *,
    coords: Mapping[str, object] | None = None,
) -> ChainFigures:
    """Trace/marginal and rank plots of the posterior's parameter sites.

    Convergence diagnostics in the sense of THEORY §7.1: if every chain targets the same
    posterior, the per-chain marginals overlap, the traces mix, and each chain's fractional
    ranks (ranks computed over all chains, divided by their number) are uniform, so the rank
    Δ-ECDF stays near 0. The rank panels show the p-value of arviz_plots' multi-chain uniformity
    test (``method="mtc_c"``, α = 1 − ``rcParams["stats.envelope_prob"]``) and mark the draws
    that drive a rejection. With a single chain, the rank plot compares its two halves (as split
    R-hat does) and its title says so.

    Built with arviz_plots (matplotlib backend): ``plot_trace_dist`` (``compact=True``: all
    coordinates of a vector site in one row, colour by coordinate, line style by chain; the
    marginal's kind follows ``rcParams["plot.density_kind"]``, ECDF by default) and
    ``plot_rank``. Divergent transitions (``sample_stats.diverging``) are marked as a rug on both
    columns of the trace figure.

    Args:
        idata: DataTree with a ``posterior`` group; ``sample_stats.diverging`` is optional.
        var_names: posterior variables to plot. Default: the root attribute
            ``parameter_sites`` (the sampled sites, as :mod:`ebm_ppl.diagnostics` records them)
            where present, else every posterior variable except the deterministic tables
            ``reward`` and ``reward_canonical``.
        coords: optional selection passed to arviz_plots, e.g. ``{"theta_dim_0": [0, 1]}`` to
            keep a wide site's plots small.

    Returns:
        :class:`ChainFigures` ``(trace, rank)``, two matplotlib figures made through pyplot.

    Raises:
        TypeError: if ``idata`` is not a DataTree.
        ValueError: if the ``posterior`` group is missing, a requested variable is absent, there
            are no parameter sites, or a single chain has fewer than 4 draws.
    """
    import arviz_plots as azp

    caller = "plot_chains"
    idata = _check_tree(idata, caller)
    posterior = _group(idata, "posterior", caller)
    names = _parameter_names(posterior, idata.attrs, var_names, caller)
    for name in names:
        dims = posterior[name].dims
        if "chain" not in dims or "draw" not in dims:
            raise ValueError(
                f"{caller}: posterior variable '{name}' has dims {dims}; expected "
                f"(chain, draw, ...)"
            )
    subtitle = _subtitle(idata)
    suffix = f"\n{subtitle}" if subtitle else ""
    figure_kwargs = {"layout": "constrained"}

    # arviz_plots needs an index on every dim it facets over (a dim without coordinate values
    # fails inside xarray's set_xindex), so give such dims 0..n-1; pass only what it reads.
    groups = {"posterior": _with_index_coords(posterior[names])}
    if "sample_stats" in idata.children:
        groups["sample_stats"] = _with_index_coords(idata["sample_stats"].to_dataset())
    source = xr.DataTree.from_dict(groups)
    rank_title = "Fractional-rank Δ-ECDF per chain"
    rank_source = source
    if posterior.sizes["chain"] == 1:
        rank_source = _split_single_chain(groups["posterior"], caller)
        rank_title += " (one chain: first half vs second half)"

    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    try:
        with warnings.catch_warnings():
            # arviz_plots draws the divergence rug with marker "|" and an edge colour, which
            # matplotlib ignores for unfilled markers and warns about; the plot is unaffected.
            warnings.filterwarnings(
                "ignore", message="You passed an edgecolor", category=UserWarning
            )
            trace_pc = azp.plot_trace_dist(
                source,
                var_names=names,
                coords=coords,
                backend="matplotlib",
                figure_kwargs=dict(figure_kwargs),
            )
        trace_pc.add_title(f"Marginal distributions and traces per chain{suffix}")
        rank_pc = azp.plot_rank(
            rank_source,
            var_names=names,
            coords=coords,
            backend="matplotlib",
            figure_kwargs=dict(figure_kwargs),
        )
        rank_pc.add_title(f"{rank_title}{suffix}")
    except BaseException:
        for number in set(plt.get_fignums()) - before:  # only figures made by this call
            plt.close(number)
        raise
    # PlotCollection keeps the backend's top-level object in its ``viz`` tree as "figure"
    trace_fig = trace_pc.get_viz("figure")
    rank_fig = rank_pc.get_viz("figure")
    return ChainFigures(trace=trace_fig, rank=rank_fig)


# --------------------------------------------------------------------------------------------
# Reward on the grid
# --------------------------------------------------------------------------------------------


def plot_reward_grid(idata: xr.DataTree, *, canonical: bool = True) -> Figure:
    """Heat maps of the posterior mean and sd of the state reward on a grid problem's grid.

    Panels (left to right): posterior mean, posterior sd, and — when ``constant_data`` has
    ``true_reward`` — the true reward; the mean and truth panels share one colour scale. Cells
    follow the row-major state index (``state = row * cols + col``, row 0 on top).

    With ``canonical=True`` each posterior draw is read from ``posterior.reward_canonical`` when
    present (else ``posterior.reward``) and has its mean over states subtracted; the truth gets
    the same treatment. For a state-only reward this is the EPIC canonicalisation under a uniform
    coverage distribution (THEORY §9.1), which removes the unidentified constant shift
    (THEORY §1.6), so mean and truth are comparable cell by cell. A ``(state, action)`` reward is
    averaged over actions (and a ``(state, action, next_state)`` one over both) first; the titles
    say so. With ``canonical=False`` the raw
    ``posterior.reward`` and ``true_reward`` are shown.

    Args:
        idata: DataTree with root attribute ``grid_shape = [rows, cols]`` and
            ``posterior.reward`` (or ``reward_canonical``) of dims
            ``(chain, draw, state[, action[, next_state]])``; ``constant_data.true_reward`` of
            the same table dims is optional.
        canonical: show mean-subtracted (canonical) rewards rather than raw ones.

    Returns:
        A matplotlib figure (made through pyplot) with 2 or 3 heat-map axes, each with a
        colour bar.

    Raises:
        TypeError: if ``idata`` is not a DataTree.
        ValueError: if the problem has no ``grid_shape``, the ``posterior`` group or its reward
            variable is missing, or shapes disagree.
    """
    caller = "plot_reward_grid"
    idata = _check_tree(idata, caller)
    if idata.attrs.get("grid_shape") is None:
        raise ValueError(
            f"{caller}: the problem has no grid (root attribute 'grid_shape' is absent; "
            f"attributes present: {sorted(idata.attrs)}); reward maps need [rows, cols]"
        )
    posterior = _group(idata, "posterior", caller)
    if canonical and "reward_canonical" in posterior.data_vars:
        source = "reward_canonical"
    else:
        source = "reward"
    da = _variable(idata, "posterior", source, caller)
    draws, averaged = _state_table(_draws(da, caller), source, caller, batched=True)
    num_states = draws.shape[1]
    rows, cols = _grid_shape(idata, caller, num_states)
    if canonical:
        draws = draws - draws.mean(axis=1, keepdims=True)

    truth = None
    if _has(idata, "constant_data", "true_reward"):
        true_values = np.asarray(idata["constant_data"]["true_reward"].values, dtype=float)
        truth, _ = _state_table(true_values, "true_reward", caller, batched=False)
        if truth.shape != (num_states,):
            raise ValueError(
                f"{caller}: constant_data.true_reward has {truth.shape[0]} states but "
                f"posterior.{source} has {num_states}"
            )
        if canonical:
            truth = truth - truth.mean()

    mean = draws.mean(axis=0).reshape(rows, cols)
    sd = draws.std(axis=0, ddof=1 if draws.shape[0] > 1 else 0).reshape(rows, cols)
    kind = "canonical reward" if canonical else "reward"
    note = f"\n(averaged over {averaged})" if averaged else ""
    shared = [mean] if truth is None else [mean, truth]
    vmin = min(float(np.min(a)) for a in shared)
    vmax = max(float(np.max(a)) for a in shared)
    if canonical:  # centred tables: a symmetric diverging scale puts 0 at the neutral colour
        vmax = max(abs(vmin), abs(vmax))
        vmin = -vmax
    cmap = "RdBu_r" if canonical else "viridis"

    num_panels = 2 if truth is None else 3
    fig = _new_figure(figsize=(5.0 * num_panels, 3.6 * max(rows / cols, 0.6) + 0.9))
    axes = fig.subplots(1, num_panels, squeeze=False)[0]
    image = _heatmap(
        axes[0], mean, f"posterior mean of the {kind}{note}", cmap=cmap, vmin=vmin, vmax=vmax
    )
    fig.colorbar(image, ax=axes[0], label=kind)
    image = _heatmap(axes[1], sd, f"posterior sd of the {kind}{note}", cmap="magma")
    fig.colorbar(image, ax=axes[1], label=f"sd of the {kind}")
    if truth is not None:
        how = " (mean subtracted)" if canonical else ""
        image = _heatmap(
            axes[2],
            truth.reshape(rows, cols),
            f"true reward{how}{note}",
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
        )
        fig.colorbar(image, ax=axes[2], label=kind)
    subtitle = _subtitle(idata)
    fig.suptitle(
        f"Reward on the {rows}×{cols} grid, {draws.shape[0]} posterior draws"
        + (f"; {subtitle}" if subtitle else "")
    )
    return fig


# --------------------------------------------------------------------------------------------
# Occupancy
# --------------------------------------------------------------------------------------------


def plot_occupancy(idata: xr.DataTree, *, prob: float = 0.9) -> Figure:
    """Posterior-predictive state occupancy against the demonstrations' empirical occupancy.

    A posterior-predictive check on the feature MaxEnt IRL matches: for each draw the model's
    expected visits per state over the horizon (``posterior_predictive.state_occupancy``),
    summarised by the posterior mean and the equal-tailed ``prob`` interval over draws (both
    stated in the legend), next to the demonstrations' mean visits per state
    (``constant_data.empirical_occupancy``). The empirical occupancy carries sampling noise of
    its own (finitely many demos), which the band does not include. For grid problems two heat
    maps on one colour scale follow: predictive mean and empirical occupancy on the grid.

    Args:
        idata: DataTree with ``posterior_predictive.state_occupancy`` ``(chain, draw, state)``
            and ``constant_data.empirical_occupancy`` ``(state,)``; ``observed_data.demos``
            (its number of demos goes in the legend) and ``attrs['grid_shape']`` are optional.
        prob: probability mass of the equal-tailed band, in (0, 1).

    Returns:
        A matplotlib figure (made through pyplot): one axes for non-grid problems; for grid
        problems the same axes plus two heat-map axes and one shared colour bar axes.

    Raises:
        TypeError: if ``idata`` is not a DataTree.
        ValueError: if a required group or variable is missing, ``prob`` is outside (0, 1), or
            the two occupancies have different numbers of states.
    """
    caller = "plot_occupancy"
    idata = _check_tree(idata, caller)
    if not 0.0 < prob < 1.0:
        raise ValueError(f"{caller}: prob must be in (0, 1), got {prob}")
    predictive = _draws(_variable(idata, "posterior_predictive", "state_occupancy", caller), caller)
    empirical = np.asarray(
        _variable(idata, "constant_data", "empirical_occupancy", caller).values, dtype=float
    )
    if predictive.ndim != 2:
        raise ValueError(
            f"{caller}: posterior_predictive.state_occupancy must have dims "
            f"(chain, draw, state), got per-draw shape {predictive.shape[1:]}"
        )
    if empirical.ndim != 1 or empirical.shape[0] != predictive.shape[1]:
        raise ValueError(
            f"{caller}: constant_data.empirical_occupancy has shape {empirical.shape}; expected "
            f"({predictive.shape[1]},) to match posterior_predictive.state_occupancy"
        )
    num_states = predictive.shape[1]
    grid = _grid_shape(idata, caller, num_states)

    mean = predictive.mean(axis=0)
    lower, upper = np.quantile(predictive, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    num_demos = None
    if _has(idata, "observed_data", "demos"):
        num_demos = int(idata["observed_data"]["demos"].shape[0])

    if grid is None:
        fig = _new_figure(figsize=(max(6.0, min(0.25 * num_states, 14.0)), 4.0))
        line_ax = fig.subplots()
    else:
        rows, cols = grid
        fig = _new_figure(figsize=(max(8.0, min(0.25 * num_states, 14.0)), 8.0))
        panels = fig.subplot_mosaic(
            [["line", "line"], ["predictive", "empirical"]], height_ratios=[1.0, 1.3]
        )
        line_ax = panels["line"]

    states = np.arange(num_states)
    line_ax.errorbar(
        states,
        mean,
        yerr=np.stack([mean - lower, upper - mean]),
        fmt="o",
        markersize=4,
        capsize=2,
        color="C0",
        label=(
            f"posterior predictive: mean, {prob:.0%} equal-tailed interval over "
            f"{predictive.shape[0]} draws"
        ),
    )
    demos = f"{num_demos} demos" if num_demos is not None else "demonstrations"
    line_ax.plot(
        states, empirical, "x", color="C3", markersize=6, label=f"empirical ({demos}): mean"
    )
    line_ax.set_xlabel("state")
    line_ax.set_ylabel("expected visits per trajectory")
    line_ax.set_title("State occupancy: posterior predictive vs demonstrations")
    line_ax.legend(loc="best", fontsize="small")

    if grid is not None:
        vmax = float(max(mean.max(), empirical.max()))
        vmin = float(min(mean.min(), empirical.min(), 0.0))
        style = {"cmap": "viridis", "vmin": vmin, "vmax": vmax}
        _heatmap(
            panels["predictive"],
            mean.reshape(rows, cols),
            "posterior predictive mean occupancy",
            **style,
        )
        image = _heatmap(
            panels["empirical"],
            empirical.reshape(rows, cols),
            f"empirical occupancy ({demos})",
            **style,
        )
        fig.colorbar(image, ax=[panels["predictive"], panels["empirical"]], label="expected visits")
    subtitle = _subtitle(idata)
    if subtitle:
        fig.suptitle(subtitle)
    return fig


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


def _save(fig: Figure, path: Path, dpi: float = 100) -> Path:
    try:
        fig.savefig(path, dpi=dpi)
    finally:
        _close(fig)
    return path


def save_plots(idata: xr.DataTree, directory: str | Path, *, dpi: float = 100) -> list[Path]:
    """Write the PNG plots that apply to ``idata`` into ``directory`` and close their figures.

    Files (``directory`` is created if needed; existing files are overwritten):

    * ``chains_trace.png``, ``chains_rank.png`` — always (:func:`plot_chains`);
    * ``reward_grid.png`` — for grid problems (``attrs['grid_shape']``) whose posterior has
      ``reward`` or ``reward_canonical`` (:func:`plot_reward_grid`, canonical);
    * ``occupancy.png`` — when ``posterior_predictive.state_occupancy`` and
      ``constant_data.empirical_occupancy`` exist (:func:`plot_occupancy`).

    Args:
        idata: DataTree as described in the module docstring; ``posterior`` is required.
        directory: output folder.
        dpi: resolution of the PNG files.

    Returns:
        The paths written, in the order above.

    Raises:
        TypeError: if ``idata`` is not a DataTree.
        ValueError: as the plotting functions (e.g. no ``posterior`` group).
    """
    caller = "save_plots"
    idata = _check_tree(idata, caller)
    _group(idata, "posterior", caller)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    paths = []
    chains = plot_chains(idata)
    try:
        paths.append(_save(chains.trace, directory / "chains_trace.png", dpi))
        paths.append(_save(chains.rank, directory / "chains_rank.png", dpi))
    finally:  # closing a closed figure is a no-op; this guards a failed first save
        _close(chains.trace)
        _close(chains.rank)
    if _grid_shape(idata, caller) is not None and (
        _has(idata, "posterior", "reward") or _has(idata, "posterior", "reward_canonical")
    ):
        paths.append(_save(plot_reward_grid(idata), directory / "reward_grid.png", dpi))
    if _has(idata, "posterior_predictive", "state_occupancy") and _has(
        idata, "constant_data", "empirical_occupancy"
    ):
        paths.append(_save(plot_occupancy(idata), directory / "occupancy.png", dpi))
    return paths


# ----------------------------------------------------------------------------- comparison harness
def plot_error_vs_compute(rows: Sequence[dict], problem: str) -> Figure:
    """:math:`|\\log\\hat Z - \\log Z|` against energy evaluations for each estimator of a problem.

    One line per estimator (``exact``, whose error is 0, is left out): the median over seeds of
    the absolute error at each budget, with the band from the smallest to the largest seed (the
    spread over seeds); log-log axes.

    Args:
        rows: rows of :func:`ebm_ppl.compare.compare` (``kind="estimator"``, ``status="ok"``).
        problem: the problem label to plot.
    """
    fig = _new_figure(figsize=(6.0, 4.2))
    ax = fig.add_subplot()
    picked = [
        r
        for r in rows
        if r["problem"] == problem
        and r["kind"] == "estimator"
        and r.get("status") == "ok"
        and np.isfinite(r.get("error", np.nan))
    ]
    if not picked:
        raise ValueError(f"plot_error_vs_compute: no finished estimator rows for {problem!r}.")
    for method in sorted({r["method"] for r in picked} - {"exact"}):  # exact: error 0
        budgets = sorted({r["budget"] for r in picked if r["method"] == method})
        evals, median, low, high = [], [], [], []
        for budget in budgets:
            cell = [r for r in picked if r["method"] == method and r["budget"] == budget]
            errors = np.abs([r["bias"] if r["bias"] == r["bias"] else r["error"] for r in cell])
            errors = np.maximum(np.asarray(errors, np.float64), 1e-16)
            evals.append(np.median([r["energy_evals"] for r in cell]))
            median.append(np.median(errors))
            low.append(np.min(errors))
            high.append(np.max(errors))
        (line,) = ax.plot(evals, median, marker="o", label=method)
        ax.fill_between(evals, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("energy evaluations")
    ax.set_ylabel(r"$|\log\hat Z - \log Z|$ (median, min–max over seeds)")
    ax.set_title(f"{problem}: log Z error against compute")
    ax.legend(fontsize="small")
    return fig


def plot_learned_rewards(rewards: Mapping[str, np.ndarray], truth, grid_shape) -> Figure:
    """Heat maps of learned state rewards beside the truth on a grid problem.

    Each table is reduced to states (mean over trailing action axes) and centred (rewards are
    identified up to a constant), then drawn on the ``grid_shape`` grid.

    Args:
        rewards: label -> reward table ``(S,)``, ``(S, A)`` or ``(S, A, S)``.
        truth: the true reward table.
        grid_shape: ``(rows, cols)`` with ``rows * cols == S``.
    """
    rows_, cols = (int(v) for v in grid_shape)
    panels = {
        "truth": np.asarray(truth, np.float64),
        **{k: np.asarray(v) for k, v in rewards.items()},
    }
    fig = _new_figure(figsize=(3.0 * len(panels), 3.0))
    for index, (label, table) in enumerate(panels.items()):
        state = table.reshape(table.shape[0], -1).mean(axis=1) if table.ndim > 1 else table
        if state.size != rows_ * cols:
            raise ValueError(
                f"plot_learned_rewards: {label!r} has {state.size} states; grid_shape "
                f"{grid_shape} needs {rows_ * cols}."
            )
        ax = fig.add_subplot(1, len(panels), index + 1)
        image = _heatmap(ax, (state - state.mean()).reshape(rows_, cols), label, cmap="viridis")
        fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def save_comparison_figures(rows: Sequence[dict], problems: Mapping, directory) -> list[Path]:
    """Write the figures of a comparison into ``directory``.

    * ``<problem>_logz_error.png``: :func:`plot_error_vs_compute` where estimators ran;
    * ``<problem>_rewards.png``: :func:`plot_learned_rewards` of each trainer's seed-0 reward on
      grid problems;
    * ``<problem>_<method>_pair.png``: an ArviZ pair plot of each posterior cell of seed 0 (from
      the saved DataTree ``directory/../posteriors/<cell id>.nc``).

    Returns:
        The paths written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for label, problem in problems.items():
        if any(
            r["problem"] == label
            and r["kind"] == "estimator"
            and r.get("status") == "ok"
            and r["method"] != "exact"
            and np.isfinite(r.get("error", np.nan))
            for r in rows
        ):
            fig = plot_error_vs_compute(rows, label)
            paths.append(_save(fig, directory / f"{label}_logz_error.png"))
        learned = {
            r["method"]: np.asarray(r["_reward"])
            for r in rows
            if r["problem"] == label
            and r["kind"] == "trainer"
            and r.get("status") == "ok"
            and r["seed"] == 0
            and "_reward" in r
        }
        grid = getattr(problem, "grid_shape", None)
        if learned and grid is not None:
            fig = plot_learned_rewards(learned, problem.true_reward(), grid)
            paths.append(_save(fig, directory / f"{label}_rewards.png"))
        for r in rows:
            if r["problem"] != label or r["kind"] != "posterior" or r.get("status") != "ok":
                continue
            if r["seed"] != 0:
                continue
            from ebm_ppl.compare import Cell
            from ebm_ppl.diagnostics import load

            cell = Cell(r["problem"], r["kind"], r["method"], r["budget"], r["seed"])
            source = directory.parent / "posteriors" / f"{cell.id}.nc"
            if source.exists():
                fig = plot_posterior_pairs(load(source))
                name = cell.method.replace(":", "-")
                paths.append(_save(fig, directory / f"{label}_{name}_pair.png"))
    return paths


def plot_posterior_pairs(idata: xr.DataTree, var_names=None) -> Figure:
    """ArviZ pair plot (``arviz_plots.plot_pair``) of the posterior's parameter sites."""
    import arviz_plots as azp

    caller = "plot_posterior_pairs"
    idata = _check_tree(idata, caller)
    posterior = _group(idata, "posterior", caller)
    names = _parameter_names(posterior, idata.attrs, var_names, caller)
    source = xr.DataTree.from_dict({"posterior": _with_index_coords(posterior[names])})
    plot = azp.plot_pair(source, var_names=names, backend="matplotlib")
    plot.add_title(f"Posterior pairs{(chr(10) + _subtitle(idata)) if _subtitle(idata) else ''}")
    return plot.get_viz("figure")
