"""``python -m runner +experiment=mnist``: the Hydra entry point.

Before Hydra starts, the config directories that plugin distributions ship (entry-point group
``runner.configs``) are put on Hydra's search path, after runner's own conf/ (runner.config_search_path),
and a config file on that path that is not valid YAML becomes one line (runner.config_sources).
"""

# isort: off
from runner.run import clock  # noqa: F401  first: the fallback of the process's start time (a run's MLflow start_time)

# isort: on
import atexit
import os
import sys
import threading
from pathlib import Path

import hydra
from hydra.core.plugins import Plugins

from hydra_plugins.runner_optuna_sweeper import RunnerOptunaSweeper
from hydra_plugins.runner_ray_launcher import RunnerRayLauncher
from runner.api import RunnerError
from runner.plugins.configs import main_config_dir
from runner.plugins.search_path import install as install_plugin_configs
from runner.run.config_sources import install as install_config_sources
from runner.run.hydra_store import install as install_store_copies
from runner.run.interrupt import Interrupted

# conf/ is the package runner.conf (the checkout's conf/ in an editable install).
CONFIG_PATH = str(main_config_dir())


def task(cfg):
    """The Hydra task, ``runner.run.task.task``, imported when a run starts (``--help`` does without it)."""
    from runner.run.task import task as run_task

    return run_task(cfg)


main = hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")(task)


def run() -> None:
    """Plugin configs on the search path, then Hydra; a plugin config problem is one line and exit 1."""
    Plugins.instance().register(RunnerOptunaSweeper)  # hydra/sweeper=runner_optuna, editable installs too
    Plugins.instance().register(RunnerRayLauncher)  # hydra/launcher=ray_cluster, likewise
    install_store_copies()  # Hydra's deep copies of its repository share the one ConfigStore (composes 10x faster)
    install_config_sources()  # a YAML syntax error in a config file: one line naming the file, line and column
    try:
        install_plugin_configs(Path(CONFIG_PATH))
    except RunnerError as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"runner: error: {e}", file=sys.stderr)
        sys.exit(1)
    try:
        main()
    except Interrupted as e:  # a signal between a sweep's jobs: the sweep's parent run says how to continue
        print(f"runner: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    exit_without_teardown()


def exit_without_teardown() -> None:
    """Exit 0 now that everything is recorded, without the interpreter tearing itself down.

    By a run's end the process holds ~150,000 objects and a few hundred MB of arrays, and freeing
    them one by one took 0.3-0.4 s after the last line was printed. The atexit handlers still run
    (logging's flushes and closes runner.log, a sweep's executors shut down), then the
    streams are flushed and the process ends. It returns, leaving the exit to the interpreter, when
    a thread that is not a daemon is alive (the interpreter would wait for it) or a profiler or tracer is on
    (``python -m cProfile -m runner`` writes its figures after this returns).
    """
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if others or sys.getprofile() is not None or sys.gettrace() is not None:
        return
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    run()
