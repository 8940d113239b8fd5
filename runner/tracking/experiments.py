"""The experiment a run is recorded in, as ``Writer.open`` finds it (runner.tracking.writer): created when
missing, by whichever of several processes gets there first, and the runs that dead processes of this host
left RUNNING marked KILLED. Writes to MLflow; called only by the Writer, the one writer of runs.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from functools import partial

from runner.tracking.store import Target, alive, retrying

log = logging.getLogger("runner.tracking")


def experiment_of(client, where: Target) -> str:
    """The id of ``where.experiment``, created when missing: several processes may create it at once (the
    losers' unique-constraint error, RESOURCE_ALREADY_EXISTS, means it is there now: it is looked up again)."""
    for attempt in range(5):
        found = retrying(lambda: client.get_experiment_by_name(where.experiment), "find experiment")
        if found:
            return found.experiment_id
        try:
            return retrying(
                lambda: client.create_experiment(where.experiment, artifact_location=where.artifact_location), "create experiment"
            )
        except Exception as e:
            if getattr(e, "error_code", None) != "RESOURCE_ALREADY_EXISTS" or attempt == 4:
                raise
            log.debug("experiment %r created by another process meanwhile", where.experiment)
            time.sleep(0.05 * random.random())
    raise AssertionError("unreachable")


def reap_stale_runs(client) -> None:
    """Mark KILLED the RUNNING runs of this host whose process no longer exists (killed hard, e.g. SIGKILL),
    in every experiment of the store: one search, filtered by status and the host tag."""
    from mlflow.entities import ViewType

    host = socket.gethostname()
    experiment_ids, token = [], None
    while True:  # pages of 1000
        page = retrying(
            partial(client.search_experiments, view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token),
            "list experiments",
        )
        experiment_ids += [e.experiment_id for e in page]
        token = page.token
        if not token:
            break
    if not experiment_ids:
        return
    stale = retrying(
        lambda: client.search_runs(
            experiment_ids,
            f"attributes.status = 'RUNNING' and tags.`runner.host` = '{host}'",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1000,
        ),
        "find stale runs",
    )
    for run in stale:
        pid = int(run.data.tags.get("runner.pid", "0") or 0)
        if pid and not alive(pid):
            # read again now that its process is gone: it may have ended its run after the search (a run finishing
            # while another starts), and once gone it cannot change it any more
            status = retrying(partial(client.get_run, run.info.run_id), "mark stale run").info.status
            if status != "RUNNING":
                continue
            reason = f"process {pid} on {host} exited without ending the run (killed hard?)"
            try:
                retrying(partial(client.set_tag, run.info.run_id, "runner.error", reason), "mark stale run")
                retrying(partial(client.set_terminated, run.info.run_id, "KILLED"), "mark stale run")
            except Exception as e:  # e.g. deleted meanwhile: the others are still looked at
                log.warning(
                    "run %s was left RUNNING by process %d, which is gone; marking it KILLED failed: %s", run.info.run_id, pid, e
                )
                continue
            log.warning("run %s was left RUNNING by process %d, which is gone: marked KILLED", run.info.run_id, pid)
