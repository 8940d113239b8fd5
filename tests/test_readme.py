"""The README's two commands are true: the main job as written, and the test command CI runs."""

import re

import pytest
from conftest import ROOT

README = (ROOT / "README.md").read_text()


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def test_readme_gives_exactly_the_two_setup_commands_and_ci_runs_the_test_one():
    setup = [line for block in bash_blocks() for line in block.splitlines() if line.startswith("pip install")]
    assert setup == ["pip install -e . && python -m runner +experiment=mnist", "pip install -e '.[test]' && python -m pytest"]
    assert setup[1] in (ROOT / ".ci" / "run").read_text().splitlines()


@pytest.mark.slow  # the README's main job: 10000 MNIST steps
def test_readme_main_job_reaches_the_classic_accuracy_and_is_where_the_readme_says(runner_cli):
    main = bash_blocks()[0].strip().split(" && ")[1]
    assert main.startswith("python -m runner ")
    result = runner_cli(*main.split()[3:])
    assert result.proc.returncode == 0, result.proc.stderr[-2000:]
    ui = next(line for block in bash_blocks() for line in block.splitlines() if line.startswith("mlflow ui"))
    assert ui.endswith("sqlite:///outputs/mlflow.db") and (result.cwd / "outputs" / "mlflow.db").is_file()
    run = result.only_run("mnist")
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test/accuracy"] >= 0.97
    assert run.data.metrics["gradcheck/max_rel_error"] <= 1e-6
