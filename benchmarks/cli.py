"""End to end: whole processes timed from the outside (imports, data, tracking, everything).

``python -m runner +experiment=mnist`` against a bare PyTorch script and a bare NumPy script of the
same recipe (mnist_torch_script.py, mnist_numpy_script.py), each in a fresh working directory; the
runner also with its store already there (a second run), and once instrumented
(instrumented_cli.py) to see where its time goes. Plus the sweep of four jobs, sequential vs joblib,
and the watch's cost: the same run with ``watch.enabled=false`` (``runner (watch off)``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: Settings a developer may have that would change what a run does; never passed to the runs timed here.
DROP_ENV = ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR", "RUNNER_DISABLE_PLUGINS", "RUNNER_ALLOW_PLUGINS", "RUNNER_STRICT_PLUGINS")


def env_for(data_dir: Path, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in DROP_ENV}
    env["RUNNER_DATA_DIR"] = str(data_dir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def timed(cmd: list[str], cwd: Path, env: dict, timeout: float) -> dict:
    """The command's wall time, until its process exits (as a shell waits for it: its output goes to files, not to
    pipes that whatever it left running would hold open), and the CPU time (user + system, from ``getrusage``) of it
    and of every process it started, the MLflow sidecar and its painters included, which outlive a run's process by
    a few tens of milliseconds. The command runs in a session of its own and this process is the subreaper of its
    descendants (Linux): those left running are reparented here and reaped after the wall time is taken."""
    import resource

    subreaper = _become_subreaper()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        began = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the command and what it started (its session's process group)
            proc.wait()
            raise
        wall = time.perf_counter() - began
        left = _reap_session(cmd, proc.pid) if subreaper else 0
        tail = time.perf_counter() - began - wall  # what it left running took to exit (a pipe reader would wait for it)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stdout[-2000:]}\n{stderr[-3000:]}")
    sys_s = after.ru_stime - before.ru_stime  # the kernel's share: on this VM mostly page faults of fresh memory
    cpu = (after.ru_utime - before.ru_utime) + sys_s
    return {"wall": wall, "cpu": cpu, "sys": sys_s, "accuracy": _accuracy(stdout + stderr), "tail": tail, "left_running": left}


#: prctl's option that makes this process the reaper of its descendants' orphans (linux/prctl.h)
PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> bool:
    """Make orphaned descendants of the commands timed here this process's children (not init's), so that their CPU
    time can be counted; False where that is not possible (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _reap_session(cmd: list[str], session: int, timeout: float = 60.0) -> int:
    """Wait for, and reap, the processes of the command's session (whose id is the command's pid) that were
    reparented to this process: a run's sidecar and its painters. Returns how many still ran after ``timeout``
    (their CPU time is then missing, and said)."""
    deadline = time.monotonic() + timeout
    while True:
        for pid in _orphans(session):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        left = _orphans(session)
        if not left:
            return 0
        if time.monotonic() > deadline:
            print(
                f"[benchmarks {time.strftime('%H:%M:%S')}] {len(left)} process(es) started by {' '.join(cmd)[:80]} still "
                f"run {timeout:.0f} s after it ended; their CPU time is not counted",
                file=sys.stderr,
                flush=True,
            )
            return len(left)
        time.sleep(0.005)


def _orphans(session: int) -> list[int]:
    """The pids of this process's children in ``session``, from /proc (zombies included: they are reaped next)."""
    me, found = os.getpid(), []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state, ppid, pgrp, session, ...
        if int(fields[1]) == me and int(fields[3]) == session:
            found.append(int(entry.name))
    return found


def _accuracy(text: str) -> float | None:
    found = re.findall(r"test/accuracy (\d\.\d+)", text) or re.findall(r"test accuracy (\d\.\d+)", text)
    return float(found[-1]) if found else None


#: a variant's suffix: run with ``NUMPY_MADVISE_HUGEPAGE=0``. NumPy asks the kernel for transparent huge pages for
#: large arrays; on this VM their first touch costs 0.02 s one day and 2 s of system time another (docs/benchmarks.md),
#: which the bare script, allocating twice the fresh memory the runner does, pays more of. An extra row, never instead.
NO_HUGE_PAGES = " (no huge pages)"


class EndToEnd:
    """The variants of the seed MNIST recipe run end to end; ``run(variant, threads)`` times one."""

    def __init__(self, data_dir: Path, iterations: int | None = None, timeout: float = 900):
        self.data_dir, self.iterations, self.timeout = Path(data_dir), iterations, timeout
        self.work = Path(tempfile.mkdtemp(prefix="runner-bench-cli-"))
        self.warm_dir: Path | None = None

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    def _fresh(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.work))

    def runner_args(self, threads: int | None) -> list[str]:
        args = ["+experiment=mnist"]
        if self.iterations:
            args.append(f"trainer.iterations={self.iterations}")
        if threads is not None:
            args.append(f"threads={threads}")
        return args

    def run(self, variant: str, threads: int | None) -> dict:
        env = env_for(self.data_dir)
        if variant.endswith(NO_HUGE_PAGES):  # the same command, NumPy not asking for transparent huge pages
            variant = variant.removesuffix(NO_HUGE_PAGES)
            env["NUMPY_MADVISE_HUGEPAGE"] = "0"
        if variant == "runner":
            cwd = self._fresh()
            result = timed([sys.executable, "-m", "runner", *self.runner_args(threads)], cwd, env, self.timeout)
        elif variant == "runner (MLflow in-process)":  # tracking.sidecar=false: the client in the run's own process
            cwd = self._fresh()
            result = timed(
                [sys.executable, "-m", "runner", *self.runner_args(threads), "tracking.sidecar=false"], cwd, env, self.timeout
            )
        elif variant == "runner (watch off)":  # watch.enabled=false: the watch section's baseline
            cwd = self._fresh()
            result = timed(
                [sys.executable, "-m", "runner", *self.runner_args(threads), "watch.enabled=false"], cwd, env, self.timeout
            )
        elif variant == "runner (store exists)":
            cwd = self._warm()
            result = timed([sys.executable, "-m", "runner", *self.runner_args(threads)], cwd, env, self.timeout)
            return result
        elif variant == "runner (instrumented)":
            cwd = self._fresh()
            out = cwd / "timings.json"
            result = timed(
                [sys.executable, "-m", "benchmarks.instrumented_cli", *self.runner_args(threads)],
                cwd,
                {**env, "BENCH_TIMINGS": str(out)},
                self.timeout,
            )
            result["timings"] = json.loads(out.read_text())
        elif variant in ("torch script", "numpy script"):
            cwd = self._fresh()
            script = HERE / ("mnist_torch_script.py" if variant == "torch script" else "mnist_numpy_script.py")
            args = [sys.executable, str(script), "--data", str(self.data_dir)]
            if threads is not None:
                args += ["--threads", str(threads)]
            if self.iterations:
                args += ["--iterations", str(self.iterations)]
            result = timed(args, cwd, env, self.timeout)
        else:
            raise ValueError(variant)
        shutil.rmtree(cwd, ignore_errors=True)
        return result

    def _warm(self) -> Path:
        """A directory whose MLflow store and experiment exist (made once by a 10-step run)."""
        if self.warm_dir is None:
            self.warm_dir = self._fresh()
            timed(
                [sys.executable, "-m", "runner", "+experiment=mnist", "trainer.iterations=10"],
                self.warm_dir,
                env_for(self.data_dir),
                self.timeout,
            )
        return self.warm_dir


def profile_cli(data_dir: Path, iterations: int | None, top: int = 25) -> dict:
    """One ``python -m cProfile -m runner +experiment=mnist`` run: the top entries by cumulative time."""
    import pstats

    work = Path(tempfile.mkdtemp(prefix="runner-bench-prof-"))
    try:
        out = work / "cli.prof"
        args = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "runner", "+experiment=mnist"]
        if iterations:
            args.append(f"trainer.iterations={iterations}")
        result = timed(args, work, env_for(data_dir), 900)
        stats = pstats.Stats(str(out))
        total = max(ct for (_, _, _), (_, _, _, ct, _) in stats.stats.items())
        rows = []
        for (file, line, name), (_cc, nc, tt, ct, _callers) in stats.stats.items():
            if file.startswith("<frozen") or name in ("<module>", "<built-in method builtins.exec>", "_call_with_frames_removed"):
                continue
            if ct > 0.9 * total or "/hydra/" in file:  # the entry point and Hydra's frames around the whole run
                continue
            rows.append({"function": _short(file, line, name), "calls": nc, "tottime": tt, "cumtime": ct})
        by_cum = sorted(rows, key=lambda r: r["cumtime"], reverse=True)[:top]
        by_own = sorted(rows, key=lambda r: r["tottime"], reverse=True)[:top]
        return {"wall": result["wall"], "by_cumtime": by_cum, "by_tottime": by_own}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _short(file: str, line: int, name: str) -> str:
    if not line:
        return name
    for marker in ("/site-packages/", str(ROOT) + "/"):
        if marker in file:
            return f"{file.split(marker, 1)[1]}:{line}({name})"
    return f"{file.rsplit('/', 1)[-1]}:{line}({name})"


def sweep(data_dir: Path, launcher: str, iterations: int, lrs: str, timeout: float = 1800) -> dict:
    """``python -m runner --multirun +experiment=mnist trainer.iterations=N optimizer.lr=...``, sequential
    (Hydra's basic launcher) or ``hydra/launcher=joblib hydra.launcher.n_jobs=2``, in a fresh directory."""
    work = Path(tempfile.mkdtemp(prefix="runner-bench-sweep-"))
    try:
        args = [
            sys.executable,
            "-m",
            "runner",
            "--multirun",
            "+experiment=mnist",
            f"trainer.iterations={iterations}",
            f"optimizer.lr={lrs}",
        ]
        if launcher == "joblib":
            args += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
        result = timed(args, work, env_for(data_dir), timeout)
        result["jobs"] = _jobs(work / "outputs" / "mlflow.db")
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _jobs(store: Path) -> list[dict]:
    """Each child run's status, BLAS threads (tag runner.blas_threads) and test accuracy, from the SQLite store."""
    if not store.is_file():
        return []
    with sqlite3.connect(store) as db:
        runs = db.execute("select run_uuid, status from runs").fetchall()
        jobs = []
        for run_id, status in runs:
            tags = dict(db.execute("select key, value from tags where run_uuid = ?", (run_id,)).fetchall())
            if "runner.job.num" not in tags:
                continue  # the sweep's parent run
            acc = db.execute(
                "select value from latest_metrics where run_uuid = ? and key = 'test/accuracy'", (run_id,)
            ).fetchone()
            jobs.append(
                {
                    "job": tags.get("runner.job.num"),
                    "status": status,
                    "blas_threads": tags.get("runner.blas_threads"),
                    "test_accuracy": acc[0] if acc else None,
                }
            )
    return sorted(jobs, key=lambda j: int(j["job"] or 0))


#: issue 19's grid: 9 jobs, one after another (Hydra's basic launcher)
GRID = ("optimizer.lr=0.01,0.1,0.5", "model.hidden=[50],[100],[100,100]")


def command(which: str, data_dir: Path) -> dict:
    """``python -m runner --help`` (``help``) or ``python -m runner.plugins`` (``plugins``), timed, in a fresh directory."""
    args = {"help": ["-m", "runner", "--help"], "plugins": ["-m", "runner.plugins"]}[which]
    work = Path(tempfile.mkdtemp(prefix="runner-bench-command-"))
    try:
        return timed([sys.executable, *args], work, env_for(data_dir), 120)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def grid(data_dir: Path, iterations: int | None = None, timeout: float = 1800) -> dict:
    """The 9-job grid of ``+experiment=mnist`` (``GRID``), sequential, in a fresh directory: the sweep's wall time and
    each job's training time, the sum of its ``time/epoch_s`` (the training steps; evaluation not included), read
    from the store, and the seconds between its run's start and end as the store has them."""
    work = Path(tempfile.mkdtemp(prefix="runner-bench-grid-"))
    try:
        args = [sys.executable, "-m", "runner", "--multirun", "+experiment=mnist", "threads=1", *GRID]
        if iterations:
            args.append(f"trainer.iterations={iterations}")
        result = timed(args, work, env_for(data_dir), timeout)
        with sqlite3.connect(work / "outputs" / "mlflow.db") as db:
            rows = db.execute(
                "select r.run_uuid, r.status, r.start_time, r.end_time, "
                "(select sum(value) from metrics m where m.run_uuid = r.run_uuid and m.key = 'time/epoch_s') "
                "from runs r where exists (select 1 from tags t where t.run_uuid = r.run_uuid and t.key = 'runner.job.num')"
            ).fetchall()
        result["jobs"] = [
            {"status": status, "training": float(train or 0.0), "run_s": (end - start) / 1000 if end and start else None}
            for _, status, start, end, train in rows
        ]
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)
