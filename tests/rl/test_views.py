"""Qt views (offscreen): scrubbing updates the existing plot items, risk changes, compare, exports."""

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from plugins.rl.distributions import ReturnDistribution  # noqa: E402
from plugins.rl.episode_stats import RiskSettings, compute_episode_stats  # noqa: E402
from plugins.rl.trajectory import Trajectory  # noqa: E402


def synthetic(kind="categorical", T=60, seed=0, shift=0.0):
    """Two episodes on CartPole observations with distributions whose mean falls over time."""
    rng = np.random.default_rng(seed)
    ep = np.array([0] * 35 + [1] * (T - 35), np.int32)
    obs = np.zeros((T, 4), np.float32)
    obs[:, 2] = np.sin(np.arange(T) / 5) * 0.15
    obs[:, 0] = np.linspace(-1, 1, T)
    term = np.zeros(T, bool)
    term[34] = True
    trunc = np.zeros(T, bool)
    trunc[-1] = True
    mu = np.linspace(30, 5, T)[:, None] + np.array([0.0, 1.0])[None] + shift
    if kind == "categorical":
        atoms = np.linspace(0, 40, 41)
        p = np.exp(-0.5 * ((atoms[None, None] - mu[..., None]) / 3.0) ** 2)
        dist = ReturnDistribution.categorical(atoms, p / p.sum(-1, keepdims=True))
    else:
        from scipy import stats
        taus = (np.arange(16) + 0.5) / 16
        dist = ReturnDistribution.quantiles(mu[..., None] + 3 * stats.norm.ppf(taus)[None, None])
    return Trajectory(obs=obs, action=(np.arange(T) % 2), reward=np.ones(T), terminated=term, truncated=trunc,
                      episode=ep, header={"env_id": "CartPole-v1", "gamma": 0.9, "algo": kind,
                                          "action_names": ["left", "right"]},
                      dist=dist, dist_valid=np.ones(T, bool), bootstrap=np.array([np.nan, 5.0]))


@pytest.fixture
def viewer(qtbot):
    from plugins.rl.views import EpisodeViewer
    v = EpisodeViewer()
    qtbot.addWidget(v)
    v.resize(1200, 800)
    v.show()
    return v


@pytest.mark.parametrize("kind", ["categorical", "quantiles"])
def test_scrub_updates_existing_items(viewer, qtbot, kind):
    traj = synthetic(kind)
    viewer.set_trajectory(traj)
    sp = viewer.step_plots
    items_before = {k: [id(x) for x in (v if isinstance(v, list) else [v])] for k, v in sp._items.items()}
    n_items = len(sp.right.getPlotItem().items)
    viewer.set_step_in_episode(10)
    qtbot.wait(1)
    # the same item objects, now showing step 10
    assert {k: [id(x) for x in (v if isinstance(v, list) else [v])] for k, v in sp._items.items()} == items_before
    assert len(sp.right.getPlotItem().items) == n_items
    st = viewer.stats
    x, y = sp._items["cdf"][1].getData()
    np.testing.assert_allclose(y, st.cdf_y[10, 1])
    assert sp._items["mean_r"][0].value() == pytest.approx(st.mean[10, 0])
    assert sp._items["cvar_r"][1].value() == pytest.approx(st.cvar[10, 1])
    assert sp._items["mc"].value() == pytest.approx(traj.mc_returns()[10])
    if kind == "categorical":
        np.testing.assert_allclose(sp._items["bars"][0].opts["height"], st.pmf[10, 0])
    else:
        np.testing.assert_allclose(sp._items["qf"][0].getData()[1], st.qf_y[10, 0])
    # the action taken is drawn bold
    assert sp._items["cdf"][0].opts["pen"].widthF() > sp._items["cdf"][1].opts["pen"].widthF()
    assert viewer.slider.value() == 10 and viewer.timeline.cursor.value() == 10
    # keyboard stepping and episode switching
    viewer.setFocus()
    qtbot.keyClick(viewer, "Right" if False else __import__("PySide6.QtCore", fromlist=["Qt"]).Qt.Key_Right)
    assert viewer.t == 11
    viewer.set_step(40)
    assert viewer.episode == 1 and viewer.t == 40 and viewer.slider.value() == 5


def test_timeline_drag_scrubs(viewer):
    viewer.set_trajectory(synthetic())
    viewer.timeline.cursor.setValue(7)
    assert viewer.t == 7


def test_risk_panel_changes_highlights(viewer):
    viewer.set_trajectory(synthetic())
    viewer.risk.alpha.setValue(25)
    assert viewer.stats.risk.alpha == pytest.approx(0.25)
    cv = viewer.stats.cvar.copy()
    viewer.risk.alpha.setValue(5)
    assert np.all(viewer.stats.cvar <= cv + 1e-9)
    # action 1 has the higher mean everywhere, so greedy is always 1; a distortion that flips nothing
    assert viewer.stats.greedy.tolist() == [1] * len(viewer.traj)
    idx = viewer.risk.dist.findData("wang")
    viewer.risk.dist.setCurrentIndex(idx)
    assert viewer.stats.risk.distortion == "wang" and viewer.risk.eta.isEnabled()
    assert "wang ≠ greedy at 0 of 35 steps" in viewer.risk.info.text()


def test_disagreement_steps_are_marked(qtbot):
    from plugins.rl.views import EpisodeViewer
    T = 40
    atoms = np.linspace(-10, 10, 21)
    p = np.zeros((T, 2, 21))
    p[:, 0, 12] = 1.0                       # action 0: sure +2
    p[:, 1, 0], p[:, 1, 20] = 0.3, 0.7       # action 1: mean +4 but 30% at -10
    traj = synthetic(T=T)
    traj.episode[:] = 0
    traj.terminated[:] = False
    traj.terminated[-1] = True
    traj.dist = ReturnDistribution.categorical(atoms, p)
    v = EpisodeViewer()
    qtbot.addWidget(v)
    v.set_trajectory(traj)
    assert v.stats.greedy.tolist() == [1] * T and v.stats.risk_action.tolist() == [0] * T
    assert v.stats.disagree.all()
    xs, _ = v.timeline.dis.getData()
    assert len(xs) == T


def test_compare_two_agents(viewer):
    a = synthetic("categorical")
    b = synthetic("quantiles", shift=2.0)
    viewer.set_trajectory(a)
    viewer.set_compare(b, labels=("C51", "QR"))
    viewer.set_step_in_episode(3)
    assert viewer.compare.w1.shape == (len(a),)
    assert np.all(viewer.compare.w1 > 0.5)
    y = viewer.compare.cb.getData()[1]
    assert y.size > 0


def test_invalid_steps_and_issues_are_shown(viewer):
    traj = synthetic()
    traj.dist_valid[5] = False
    traj.dist.probs[5] = np.nan
    from plugins.rl.distributions import Issue
    traj.issues = [Issue("dist_probs", "probabilities sum to 0.8000", step=5, action=0)]
    viewer.set_trajectory(traj)
    assert viewer.issues.isVisibleTo(viewer) and "step 5" in viewer.issues.text()
    viewer.set_step_in_episode(5)
    assert "invalid distribution" in viewer.step_info.text()


def test_exports(viewer, tmp_path):
    from PIL import Image
    viewer.set_trajectory(synthetic())
    png = viewer.export_png(tmp_path / "fig.png", width_in=4, dpi=200)
    im = Image.open(png)
    assert im.size[0] == 800 and np.asarray(im.convert("L")).std() > 5
    svgs = viewer.export_svg(tmp_path / "fig.svg", which="all")
    assert len(svgs) == 10 and all(p.read_text().lstrip().startswith("<?xml") for p in svgs)
    fig = viewer.export_svg(tmp_path / "figure.svg")[0].read_text()
    assert "<svg" in fig and "<path" in fig and "CDF" in fig  # vector paths and real text
    gif = viewer.export_gif(tmp_path / "scrub.gif", start=0, stop=4, width=300)
    g = Image.open(gif)
    assert g.n_frames == 4
    from plugins.rl.episode_stats import export_csv, export_npz
    st = viewer._episode_stats()
    export_csv(st, tmp_path / "d.csv")
    export_npz(st, tmp_path / "d.npz")
    assert len((tmp_path / "d.csv").read_text().splitlines()) == 36
    with np.load(tmp_path / "d.npz") as z:
        assert z["mean"].shape == (35, 2)


def test_series_viewer_entry_point(viewer, tmp_path):
    from plugins.rl.tools import to_series
    from plugins.rl.trajectory import write_trajectory
    traj = synthetic("quantiles")
    path = write_trajectory(tmp_path / "t.npz", traj)
    viewer.set_result(to_series(traj, path=str(path)))
    assert len(viewer.traj) == len(traj) and viewer.frame.img.image is not None


def test_episode_stats_risk_recompute():
    st = compute_episode_stats(synthetic("quantiles"))
    st.set_risk(RiskSettings(alpha=0.5, distortion="power", eta=-2.0))
    assert st.distorted.shape == (60, 2) and np.all(st.distorted < st.mean)
    assert st.bands.shape == (60, 5) and np.all(np.diff(st.bands, axis=1) >= 0)


def test_pyside_refcount_workaround_is_active_where_needed():
    import sys
    import PySide6  # noqa: F401
    from plugins.rl import qtfix
    qtfix.protect_singletons()
    if qtfix.affected():
        assert sys.getrefcount(None) > 10**8 and sys.getrefcount(True) > 10**8
    else:
        assert qtfix.protect_singletons() is False


def test_the_title_does_not_say_episode_twice(viewer, tmp_path):
    """Issue 28, item 15: a series labelled "episode" made the bar read "... episode episode"."""
    from plugins.rl.tools import to_series
    from plugins.rl.trajectory import write_trajectory
    traj = synthetic("quantiles")
    path = write_trajectory(tmp_path / "t.npz", traj)
    viewer.set_result(to_series(traj, path=str(path), label="episode"))
    assert viewer.title.text() == "quantiles · CartPole-v1"
    viewer.set_result(to_series(traj, path=str(path), label="best run"))
    assert viewer.title.text() == "quantiles · CartPole-v1 · best run"


def test_the_empty_compare_plot_shows_probabilities(viewer):
    """Issue 28, item 15: empty, the Compare plot's probability axis ran from -0.4 to 0.4."""
    from PySide6.QtWidgets import QApplication
    viewer.compare.show()
    viewer.compare.resize(800, 600)
    for _ in range(30):  # pyqtgraph ranges the empty plot when it is laid out and shown
        QApplication.processEvents()
    (x0, x1), (y0, y1) = viewer.compare.cdf.getPlotItem().getViewBox().viewRange()
    assert y0 >= -0.01 and 0.99 <= y1 <= 1.1 and x0 >= -0.01
