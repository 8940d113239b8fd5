"""A tracking server that goes away mid-run (issue 13): what the run could not write is kept in a spill file beside it,
the run ends with one line saying where and how to continue, and ``+resume`` writes the file into the store before it
continues: the histories end up exactly those of an undisturbed run. Real processes, a real ``mlflow server``."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
from conftest import run_cli
from test_faults import IRIS, sidecars_in
from test_reliability import histories, sidecar_of, start_with
from test_tracking import Server, client_of

ARGS = [*IRIS, "checkpoint.every=10", "checkpoint.min_interval_s=0"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The histories of ARGS run through undisturbed (deterministic: same seed, same histories, whatever the store)."""
    cwd = tmp_path_factory.mktemp("reference")
    result = run_cli(cwd, *ARGS)
    assert result.proc.returncode == 0, result.proc.stderr[-2000:]
    found = histories(result.client(), result.only_run("iris").info.run_id)
    assert len(found["train/loss"]) == 1200
    return found


def disturb_at(proc, marker: str, disturb) -> str:
    """Read a run's output until a line holding ``marker``; there, with the run standing still (SIGSTOP), ``disturb()``
    (the store goes away); then let it go on to its end. Returns everything it printed."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            os.kill(proc.pid, signal.SIGSTOP)
            disturb()
            os.kill(proc.pid, signal.SIGCONT)
            break
    seen.append(proc.stdout.read())
    proc.wait(timeout=180)
    return "".join(seen)


@pytest.mark.parametrize("sidecar_killed", [False, True], ids=["server-down", "server-down-and-sidecar-killed"])
def test_a_server_gone_mid_run_keeps_what_was_not_written_and_resume_replays_it_exactly(tmp_path, reference, sidecar_killed):
    """Was: `tracking: cannot record in the MLflow store ...`, every point not yet written lost, and the run left RUNNING
    on the server (with the MLflow child process killed too: `... could not open the store either`, the same)."""
    server = Server(tmp_path)
    server.start()
    try:
        env = {"MLFLOW_TRACKING_URI": server.url}
        proc = start_with(tmp_path, env, *ARGS)

        def take_the_server_away():
            sidecar = sidecar_of(proc.pid)
            server.stop()
            if sidecar_killed:
                os.kill(sidecar, signal.SIGKILL)

        output = disturb_at(proc, "epoch 100/200", take_the_server_away)
        assert proc.returncode == 1, output[-3000:]
        assert "Traceback" not in output
        [line] = [line for line in output.splitlines() if line.startswith("runner: error: tracking:")]
        assert f"cannot record in the MLflow store '{server.url}'" in line
        if sidecar_killed:
            assert "died (signal 9, SIGKILL)" in line and "could not open the store either" in line
        kept = re.search(r"is kept in (\S+); once the store answers, continue the run with: (python -m runner .*)$", line)
        assert kept, line
        spill_file, command = kept.group(1), kept.group(2)
        resume_arg = command.split("+resume=")[1]
        assert os.path.isfile(spill_file) and os.path.dirname(spill_file) == resume_arg
        assert command.split()[3:-1] == ARGS  # the same overrides, as the user typed them
        deadline = time.time() + 30
        while sidecars_in(tmp_path) and time.time() < deadline:
            time.sleep(0.1)
        assert not sidecars_in(tmp_path)

        server.start()  # the server is back, with its store as it was
        client = client_of(server.url)
        [run] = client.search_runs([client.get_experiment_by_name("iris").experiment_id])
        assert run.info.status == "RUNNING"  # what the spill file holds is not in the store yet (its end among it)
        resumed = run_cli(tmp_path, *ARGS, f"+resume={resume_arg}", env=env)
        assert resumed.proc.returncode == 0, resumed.proc.stderr[-3000:]
        said = resumed.proc.stdout + resumed.proc.stderr
        assert f"into {server.url}" in said and not os.path.exists(spill_file)  # replayed, renamed *.replayed
        run = client.get_run(run.info.run_id)
        assert run.info.status == "FINISHED" and "runner.error" not in run.data.tags
        assert "is kept in" in run.data.tags["runner.interrupted"]  # the reason it stopped, from the spill file
        found = histories(client, run.info.run_id)
        assert {k: len(v) for k, v in found.items()} == {k: len(v) for k, v in reference.items()}  # none lost, none twice
        assert found == reference
        assert len(client.search_runs([run.info.experiment_id])) == 1
    finally:
        server.stop()
