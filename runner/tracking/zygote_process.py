"""The process a sweep's zygote forks (runner.tracking.zygote): ``multiprocessing``'s forkserver process, except that
the child is not told to import this process's ``__main__`` (as ``__mp_main__``). A sidecar needs nothing of it, and a
script without an ``if __name__ == "__main__"`` guard that starts a sweep in its own process would run again in every
sidecar (``python -m runner`` itself is spared by multiprocessing). Imported only where a zygote runs.
"""

from __future__ import annotations

import threading
from multiprocessing import context, popen_forkserver, spawn

_launching = threading.Lock()


def _without_main(name: str) -> dict:
    data = _preparation_data(name)
    data.pop("init_main_from_name", None)
    data.pop("init_main_from_path", None)
    return data


_preparation_data = spawn.get_preparation_data


class _Popen(popen_forkserver.Popen):
    def _launch(self, process_obj) -> None:
        with _launching:  # multiprocessing reads spawn.get_preparation_data as it launches: swapped for this launch only
            spawn.get_preparation_data = _without_main
            try:
                super()._launch(process_obj)  # type: ignore[misc]
            finally:
                spawn.get_preparation_data = _preparation_data


class SidecarProcess(context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj):
        return _Popen(process_obj)
