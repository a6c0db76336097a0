"""Distributional-RL plugin: train and record C51 / QR-DQN / IQN agents and plot their return
distributions step by step. Cheap to import: stdlib + app.api only; torch, gymnasium and Qt are
imported by the referenced modules when a tool runs or a viewer opens."""

from app.api import (BoolParam, ChoiceParam, FloatParam, IntParam, PathParam, ReaderSpec, SeedParam, ToolSpec,
                     ViewerSpec, WriterSpec, hookimpl)

REQUIRES_API = "1.1"

_ENVS = ("CartPole-v1", "Acrobot-v1")
_AGENT_FILTERS = ("Agents (*.safetensors *.json *.cleanrl_model *.zip)",)
_TRAJ_FILTERS = ("Trajectories (*.npz *.hdf5 *.h5)",)
# not checked as a file: a Minari dataset is a folder, or an id in the local Minari root (the tool says
# plainly when neither is there)
_TRAJ_HELP = ("a trajectory file (.npz, Minari or D4RL .hdf5), a Minari dataset folder, or a Minari dataset id "
              "(cartpole/expert-v0) from the local Minari root (~/.minari/datasets or $MINARI_DATASETS_PATH)")


@hookimpl
def studio_tools():
    return [
        ToolSpec(
            id="rl-train",
            title="Train a distributional RL agent",
            description="Train C51, QR-DQN or IQN on a classic-control task on the chosen device and precision, with "
                        "live episode-return curves; saves the agent (safetensors + JSON) and records an evaluation "
                        "episode.",
            group="rl",
            run="plugins.rl.tools:run_train",
            results=("table", "file", "distribution"),
            backends=("torch",),
            params=(
                ChoiceParam(name="algo", choices=("c51", "qr-dqn", "iqn"), labels=("C51", "QR-DQN", "IQN"),
                            default="qr-dqn"),
                ChoiceParam(name="env", choices=_ENVS, default="CartPole-v1"),
                IntParam(name="steps", default=50_000, min=500, max=2_000_000, step=1000,
                         help="environment steps at most"),
                BoolParam(name="stop_when_solved", default=True,
                          help="stop once the greedy mean return over 20 episodes reaches the task's threshold"),
                IntParam(name="record_episodes", default=1, min=0, max=100,
                         help="greedy episodes recorded with the trained agent"),
                IntParam(name="hidden", default=128, min=8, max=1024, advanced=True, help="units per hidden layer"),
                PathParam(name="save_to", mode="dir", must_exist=False, optional=True,
                          help="folder for the agent and its trajectory (default: a new folder in the studio's "
                               "data folder); the command line's --out D also copies them into D"),
                SeedParam(name="seed"),
            ),
        ),
        ToolSpec(
            id="rl-record",
            title="Record episodes with return distributions",
            description="Run an agent (ours, cleanrl .cleanrl_model or sb3-contrib QR-DQN .zip; default: the "
                        "bundled CartPole QR-DQN) and record every step's per-action return distribution.",
            group="rl",
            run="plugins.rl.tools:run_record",
            results=("distribution", "table", "file"),
            backends=("torch",),
            params=(
                PathParam(name="agent", optional=True, filters=_AGENT_FILTERS,
                          help="agent file; empty: the bundled CartPole QR-DQN"),
                IntParam(name="episodes", default=2, min=1, max=1000),
                FloatParam(name="epsilon", default=0.0, min=0.0, max=1.0, step=0.01,
                           help="probability of a random action at each step"),
                ChoiceParam(name="risk", choices=("neutral", "cvar", "wang", "cpw", "power"),
                            labels=("greedy (mean)", "CVaR", "Wang", "CPW", "power"), default="neutral",
                            help="act on a distortion risk measure instead of the mean"),
                FloatParam(name="risk_param", default=-1.0, min=-10.0, max=10.0,
                           help="distortion parameter eta (-1: the IQN paper's default for the chosen measure)"),
                BoolParam(name="frames", default=False, help="store rendered frames in the file"),
                PathParam(name="save_to", mode="dir", must_exist=False, optional=True,
                          help="folder for the trajectory file (default: a new folder in the studio's data folder)"),
                SeedParam(name="seed"),
            ),
        ),
        ToolSpec(
            id="rl-annotate",
            title="Add an agent's return distributions to a trajectory",
            description="Evaluate an agent on every observation of a trajectory (ours, Minari HDF5 or D4RL HDF5), "
                        "e.g. to compare two agents or checkpoints on the same episode.",
            group="rl",
            run="plugins.rl.tools:run_annotate",
            results=("distribution", "table", "file"),
            backends=("torch",),
            params=(
                PathParam(name="trajectory", filters=_TRAJ_FILTERS, must_exist=False, help=_TRAJ_HELP),
                PathParam(name="agent", optional=True, filters=_AGENT_FILTERS),
                PathParam(name="save_to", mode="dir", must_exist=False, optional=True),
            ),
        ),
        ToolSpec(
            id="rl-calibration",
            title="Calibration of predicted returns",
            description="PIT histogram and central-interval coverage of realised Monte-Carlo returns by the "
                        "predicted distributions, with a warning when mass piles up at v_min/v_max.",
            group="rl",
            run="plugins.rl.tools:run_calibration",
            results=("table",),
            params=(
                PathParam(name="trajectory", filters=_TRAJ_FILTERS, must_exist=False, help=_TRAJ_HELP),
                IntParam(name="bins", default=10, min=2, max=100),
                BoolParam(name="exclude_truncated", default=True,
                          help="leave out steps whose return is cut short by a time limit without bootstrap"),
            ),
        ),
    ]


@hookimpl
def studio_readers():
    return [ReaderSpec(id="rl-trajectory", title="RL trajectory (return distributions)",
                       patterns=("*.npz", "*.hdf5", "*.h5"), read="plugins.rl.tools:read_trajectory_file",
                       priority=5)]


@hookimpl
def studio_writers():
    return [WriterSpec(id="rl-distribution-csv", title="Return distributions: statistics per step (CSV)",
                       kinds=("distribution",), extensions=(".csv",),
                       write="plugins.rl.tools:write_distribution_csv")]


@hookimpl
def studio_viewers():
    return [ViewerSpec(id="rl-episode-viewer", title="Episode return distributions", kind="distribution",
                       widget="plugins.rl.views:EpisodeViewer", priority=10)]
