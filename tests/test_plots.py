"""Tests of the plotting side of Bayesian reward inference (``ebm_ppl.plots``).

The DataTrees are synthetic (random numbers in the layout the inference layer writes), built with
``arviz_base.from_dict`` or with xarray directly. Checks are structural — number of axes, titles,
legends, the numbers drawn in the heat maps — plus PNG files that matplotlib reads back. The
backend is Agg (tests/conftest.py).
"""

from __future__ import annotations

import arviz_base as azb
import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr

from ebm_ppl import plots

CHAINS, DRAWS = 2, 40
ROWS, COLS = 3, 4
NUM_STATES = ROWS * COLS
NUM_ACTIONS = 3


def make_tree(
    seed=0,
    *,
    grid=True,
    actions=False,
    truth=True,
    predictive=True,
    canonical_site=True,
    num_states=NUM_STATES,
):
    """A DataTree in the inference layer's layout, filled with random numbers."""
    rng = np.random.default_rng(seed)
    table = (num_states, NUM_ACTIONS) if actions else (num_states,)
    table_dims = ["state", "action"] if actions else ["state"]
    true_reward = rng.normal(size=table)
    reward = true_reward + 0.3 * rng.normal(size=(CHAINS, DRAWS, *table)) + 2.0
    axes = tuple(range(2, reward.ndim))
    posterior = {
        "theta": rng.normal(size=(CHAINS, DRAWS, 3)),
        "rationality": rng.gamma(2.0, size=(CHAINS, DRAWS)),
        "reward": reward,
    }
    dims = {"theta": ["theta_dim_0"], "reward": table_dims}
    if canonical_site:
        posterior["reward_canonical"] = reward - reward.mean(axis=axes, keepdims=True)
        dims["reward_canonical"] = table_dims
    data = {
        "posterior": posterior,
        "sample_stats": {
            "diverging": rng.random((CHAINS, DRAWS)) < 0.1,
            "energy": rng.normal(size=(CHAINS, DRAWS)),
            "step_size": np.full((CHAINS, DRAWS), 0.3),
        },
        "observed_data": {"demos": rng.integers(0, num_states, size=(7, 5, 2))},
    }
    dims["demos"] = ["demo", "step", "column"]
    constant = {}
    if predictive:
        occupancy = 6.0 * rng.dirichlet(np.ones(num_states), size=(CHAINS, DRAWS))
        data["posterior_predictive"] = {
            "state_occupancy": occupancy,
            "evd": rng.gamma(1.0, size=(CHAINS, DRAWS)),
        }
        constant["empirical_occupancy"] = occupancy.mean(axis=(0, 1))
        dims["state_occupancy"] = ["state"]
        dims["empirical_occupancy"] = ["state"]
    if truth:
        constant["true_reward"] = true_reward
        dims["true_reward"] = table_dims
    if constant:
        data["constant_data"] = constant
    tree = azb.from_dict(data, dims=dims)
    tree.attrs.update(problem="gridworld" if grid else "chain", likelihood="causal", method="nuts")
    if grid:
        tree.attrs["grid_shape"] = [ROWS, COLS]
    return tree


def visible_axes(fig):
    return [ax for ax in fig.axes if ax.axison]


def heatmap_axes(fig):
    return [ax for ax in fig.axes if ax.images]


@pytest.fixture
def no_new_figures():
    """Fails a test that leaves figures open other than the ones it returns and closes."""
    before = set(plt.get_fignums())
    yield
    leaked = set(plt.get_fignums()) - before
    for number in leaked:
        plt.close(number)
    assert not leaked, f"figures left open: {sorted(leaked)}"


# ------------------------------------------------------------------------------------ chains
def test_plot_chains_grid_tree(no_new_figures):
    tree = make_tree()
    figs = plots.plot_chains(tree)
    assert isinstance(figs, plots.ChainFigures)
    try:
        # compact trace plot: one row per site (theta, rationality), columns marginal and trace;
        # reward and reward_canonical are deterministic tables and stay out
        trace_axes = visible_axes(figs.trace)
        assert len(trace_axes) == 4
        labels = {ax.get_xlabel() for ax in trace_axes} | {ax.get_ylabel() for ax in trace_axes}
        assert {"theta", "rationality", "Draw"} <= labels
        assert not any("reward" in label for label in labels)
        assert "traces" in figs.trace.get_suptitle()
        assert "gridworld" in figs.trace.get_suptitle()
        # rank plot: one panel per scalar parameter (3 theta coordinates + rationality)
        rank_axes = visible_axes(figs.rank)
        assert len(rank_axes) == 4
        assert all(ax.get_xlabel() == "Fractional ranks" for ax in rank_axes)
        titles = [ax.get_title() for ax in rank_axes]
        assert sum("theta" in t for t in titles) == 3 and "rationality" in titles
        assert "rank" in figs.rank.get_suptitle()
    finally:
        plt.close(figs.trace)
        plt.close(figs.rank)


def test_plot_chains_single_chain_and_var_names(no_new_figures):
    """A tree built with xarray directly, one chain: the rank plot compares its two halves."""
    rng = np.random.default_rng(1)
    posterior = xr.Dataset(
        {
            "theta": (("chain", "draw", "theta_dim_0"), rng.normal(size=(1, 30, 2))),
            "rationality": (("chain", "draw"), rng.gamma(2.0, size=(1, 30))),
        },
        coords={"chain": [0], "draw": np.arange(30)},
    )
    tree = xr.DataTree.from_dict({"posterior": posterior})
    tree.attrs["parameter_sites"] = np.array(["theta"])  # as read back from netCDF
    figs = plots.plot_chains(tree)
    try:
        assert len(visible_axes(figs.trace)) == 2
        assert len(visible_axes(figs.rank)) == 2
        assert "one chain" in figs.rank.get_suptitle()
    finally:
        plt.close(figs.trace)
        plt.close(figs.rank)

    short = xr.DataTree.from_dict({"posterior": posterior.isel(draw=slice(0, 3))})
    with pytest.raises(ValueError, match="at least 4 draws"):
        plots.plot_chains(short, var_names="theta")


def test_plot_chains_errors(no_new_figures):
    tree = make_tree(predictive=False)
    with pytest.raises(ValueError, match=r"var_names \['beta'\].*'posterior'"):
        plots.plot_chains(tree, var_names=["theta", "beta"])
    no_posterior = xr.DataTree.from_dict({"sample_stats": tree["sample_stats"].to_dataset()})
    with pytest.raises(ValueError, match="no 'posterior' group"):
        plots.plot_chains(no_posterior)
    only_tables = xr.DataTree.from_dict(
        {"posterior": tree["posterior"].to_dataset()[["reward", "reward_canonical"]]}
    )
    with pytest.raises(ValueError, match="no parameter sites"):
        plots.plot_chains(only_tables)
    with pytest.raises(TypeError, match="DataTree"):
        plots.plot_chains({"posterior": {}})


# ------------------------------------------------------------------------------ reward grid
def test_plot_reward_grid_canonical_with_truth(no_new_figures):
    tree = make_tree(canonical_site=False)
    fig = plots.plot_reward_grid(tree)
    try:
        maps = heatmap_axes(fig)
        assert len(maps) == 3
        assert len(fig.axes) == 6  # each map has its colour bar
        titles = [ax.get_title() for ax in maps]
        assert titles[0].startswith("posterior mean of the canonical reward")
        assert titles[1].startswith("posterior sd of the canonical reward")
        assert titles[2].startswith("true reward (mean subtracted)")
        assert not any("actions" in t for t in titles)
        assert f"{ROWS}×{COLS}" in fig.get_suptitle()
        # the numbers drawn: per-draw centred reward, row-major on the grid
        draws = tree["posterior"]["reward"].values.reshape(-1, NUM_STATES)
        centred = draws - draws.mean(axis=1, keepdims=True)
        expected_mean = centred.mean(axis=0).reshape(ROWS, COLS)
        expected_sd = centred.std(axis=0, ddof=1).reshape(ROWS, COLS)
        truth = tree["constant_data"]["true_reward"].values
        np.testing.assert_allclose(maps[0].images[0].get_array(), expected_mean)
        np.testing.assert_allclose(maps[1].images[0].get_array(), expected_sd)
        np.testing.assert_allclose(
            maps[2].images[0].get_array(), (truth - truth.mean()).reshape(ROWS, COLS)
        )
        # mean and truth share one symmetric colour scale
        assert maps[0].images[0].get_clim() == maps[2].images[0].get_clim()
        low, high = maps[0].images[0].get_clim()
        assert low == -high
    finally:
        plt.close(fig)


def test_plot_reward_grid_state_action_raw_and_no_truth(no_new_figures):
    tree = make_tree(actions=True, truth=False)
    fig = plots.plot_reward_grid(tree, canonical=False)
    try:
        maps = heatmap_axes(fig)
        assert len(maps) == 2
        assert all("averaged over actions" in ax.get_title() for ax in maps)
        assert maps[0].get_title().startswith("posterior mean of the reward")
        raw = tree["posterior"]["reward"].values.mean(axis=-1).reshape(-1, NUM_STATES)
        np.testing.assert_allclose(
            maps[0].images[0].get_array(), raw.mean(axis=0).reshape(ROWS, COLS)
        )
    finally:
        plt.close(fig)
    # canonical=True reads reward_canonical for (state, action) tables
    fig = plots.plot_reward_grid(tree)
    try:
        canon = tree["posterior"]["reward_canonical"].values.mean(axis=-1).reshape(-1, NUM_STATES)
        canon = canon - canon.mean(axis=1, keepdims=True)
        np.testing.assert_allclose(
            heatmap_axes(fig)[0].images[0].get_array(), canon.mean(axis=0).reshape(ROWS, COLS)
        )
    finally:
        plt.close(fig)


def test_plot_reward_grid_next_state_table(no_new_figures):
    """A (state, action, next_state) reward is averaged over both trailing axes."""
    rng = np.random.default_rng(2)
    reward = rng.normal(size=(CHAINS, DRAWS, NUM_STATES, 2, NUM_STATES))
    tree = azb.from_dict(
        {"posterior": {"reward": reward}},
        dims={"reward": ["state", "action", "next_state"]},
    )
    tree.attrs["grid_shape"] = np.array([ROWS, COLS])
    fig = plots.plot_reward_grid(tree)
    try:
        maps = heatmap_axes(fig)
        assert all("averaged over actions and next states" in ax.get_title() for ax in maps)
        state = reward.mean(axis=(3, 4)).reshape(-1, NUM_STATES)
        state = state - state.mean(axis=1, keepdims=True)
        np.testing.assert_allclose(
            maps[0].images[0].get_array(), state.mean(axis=0).reshape(ROWS, COLS)
        )
    finally:
        plt.close(fig)


def test_plot_reward_grid_errors(no_new_figures):
    with pytest.raises(ValueError, match="no grid.*grid_shape"):
        plots.plot_reward_grid(make_tree(grid=False))
    bad = make_tree()
    bad.attrs["grid_shape"] = [5, 5]
    with pytest.raises(ValueError, match=r"25 cells but the data have 12 states"):
        plots.plot_reward_grid(bad)
    no_reward = make_tree()
    no_reward["posterior"] = no_reward["posterior"].to_dataset()[["theta"]]
    with pytest.raises(ValueError, match="no variable 'reward'"):
        plots.plot_reward_grid(no_reward)


# -------------------------------------------------------------------------------- occupancy
def test_plot_occupancy_grid(no_new_figures):
    tree = make_tree()
    fig = plots.plot_occupancy(tree)
    try:
        assert len(fig.axes) == 4  # line plot, two heat maps, one shared colour bar
        line_ax = fig.axes[0]
        assert "occupancy" in line_ax.get_title()
        legend = [text.get_text() for text in line_ax.get_legend().get_texts()]
        assert any("90% equal-tailed interval" in text for text in legend)
        assert any("empirical (7 demos)" in text for text in legend)
        maps = heatmap_axes(fig)
        assert [ax.get_title() for ax in maps] == [
            "posterior predictive mean occupancy",
            "empirical occupancy (7 demos)",
        ]
        occupancy = tree["posterior_predictive"]["state_occupancy"].values
        np.testing.assert_allclose(
            maps[0].images[0].get_array(), occupancy.mean(axis=(0, 1)).reshape(ROWS, COLS)
        )
        assert maps[0].images[0].get_clim() == maps[1].images[0].get_clim()
    finally:
        plt.close(fig)


def test_plot_occupancy_non_grid_band(no_new_figures):
    tree = make_tree(grid=False)
    fig = plots.plot_occupancy(tree, prob=0.5)
    try:
        assert len(fig.axes) == 1
        ax = fig.axes[0]
        assert any("50% equal-tailed" in t.get_text() for t in ax.get_legend().get_texts())
        # the error bars span the equal-tailed quantiles over all chains and draws
        draws = tree["posterior_predictive"]["state_occupancy"].values.reshape(-1, NUM_STATES)
        lower, upper = np.quantile(draws, [0.25, 0.75], axis=0)
        segments = ax.containers[0].lines[2][0].get_segments()
        np.testing.assert_allclose([seg[0][1] for seg in segments], lower)
        np.testing.assert_allclose([seg[1][1] for seg in segments], upper)
    finally:
        plt.close(fig)


def test_plot_occupancy_errors(no_new_figures):
    with pytest.raises(ValueError, match="no 'posterior_predictive' group"):
        plots.plot_occupancy(make_tree(predictive=False))
    no_empirical = make_tree()
    no_empirical["constant_data"] = no_empirical["constant_data"].to_dataset()[["true_reward"]]
    with pytest.raises(ValueError, match="no variable 'empirical_occupancy'"):
        plots.plot_occupancy(no_empirical)
    mismatch = make_tree(grid=False)
    mismatch["constant_data"] = xr.Dataset({"empirical_occupancy": ("state", np.ones(5))})
    with pytest.raises(ValueError, match=r"shape \(5,\); expected \(12,\)"):
        plots.plot_occupancy(mismatch)
    with pytest.raises(ValueError, match="prob must be in"):
        plots.plot_occupancy(make_tree(), prob=1.0)


# ------------------------------------------------------------------------------ save_plots
@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ["chains_trace", "chains_rank", "reward_grid", "occupancy"]),
        ({"grid": False}, ["chains_trace", "chains_rank", "occupancy"]),
        ({"grid": False, "predictive": False}, ["chains_trace", "chains_rank"]),
    ],
    ids=["grid", "non_grid", "non_grid_no_predictive"],
)
def test_save_plots(tmp_path, kwargs, expected, no_new_figures):
    callers_fig = plt.figure()  # the caller's figure must survive
    try:
        paths = plots.save_plots(make_tree(**kwargs), tmp_path / "out", dpi=40)
        assert [p.name for p in paths] == [f"{name}.png" for name in expected]
        for path in paths:
            assert path.parent == tmp_path / "out" and path.stat().st_size > 0
            image = mpimg.imread(path)
            assert image.ndim == 3 and image.shape[0] > 10 and image.shape[1] > 10
        assert callers_fig.number in plt.get_fignums()
    finally:
        plt.close(callers_fig)


def test_save_plots_needs_posterior(tmp_path, no_new_figures):
    tree = make_tree()
    no_posterior = xr.DataTree.from_dict({"constant_data": tree["constant_data"].to_dataset()})
    with pytest.raises(ValueError, match="no 'posterior' group"):
        plots.save_plots(no_posterior, tmp_path)
    assert not list(tmp_path.iterdir())
