"""``python -m runner +experiment=mnist``: the Hydra entry point."""
from pathlib import Path

import hydra
import hydra_plugins.runner_optuna_sweeper  # noqa: F401  registers hydra/sweeper=runner_optuna (editable installs too)

from runner.app import task

# conf/ sits beside runner/ in a checkout (and an editable install); a wheel carries it as runner/conf.
HERE = Path(__file__).resolve().parent
CONFIG_PATH = str(HERE / "conf" if (HERE / "conf").is_dir() else HERE.parent / "conf")

main = hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")(task)

if __name__ == "__main__":
    main()
