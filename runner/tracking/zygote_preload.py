"""Imported by the sweep's zygote (runner.tracking.zygote) before it forks any sidecar, and nowhere else: what a
sidecar and its painters import and warm up (runner.tracking.sidecar.warm_up), done once for the whole sweep.

The zygote ignores SIGTERM, as its sidecars do (multiprocessing's forkserver already ignores SIGINT): a SIGTERM to
the sweep's process group is for the sweep's process to act on; the zygote exits when that process and the sidecars
it forked have.
"""

import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)
try:
    from runner.tracking.sidecar import warm_up

    warm_up()
except Exception:  # the forkserver would die of it; a sidecar forked from a zygote that did not warm up warms itself
    pass
