"""The terminal shows a progress bar per epoch on a TTY, and plain log lines otherwise (CI)."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest
from conftest import SHARED_DATA

pytestmark = pytest.mark.slow  # two whole runs of python -m runner, about 20 s

ARGS = [sys.executable, "-m", "runner", "+experiment=iris", "trainer.epochs=3"]


def test_progress_bar_on_a_terminal_plain_lines_otherwise(tmp_path):
    env = {**os.environ, "RUNNER_DATA_DIR": str(SHARED_DATA), "COLUMNS": "120"}
    env.pop("MLFLOW_TRACKING_URI", None)
    main, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a 120-column terminal
    proc = subprocess.Popen(ARGS, cwd=tmp_path, env=env, stdin=secondary, stdout=secondary, stderr=secondary)
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=120) == 0
    on_tty = b"".join(chunks).decode(errors="replace")
    assert "epoch 1/3" in on_tty and "step/s" in on_tty and "loss" in on_tty  # tqdm's bar

    plain = subprocess.run(ARGS, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0
    assert "step/s" not in plain.stdout + plain.stderr
    assert "epoch 3/3 step 18/18" in plain.stdout  # the plain log line
    assert "browse it with: mlflow ui --backend-store-uri" in plain.stdout
