"""One measurement in a fresh process: ``python -m benchmarks.worker '<json spec>'``.

The spec names the engine (runner, numpy, torch, gradcheck, gemm, conv), the recipe, the BLAS threads and
what to run (for runner: ``model``, sequential or graph, how its network is written); the process
prints one line ``RESULT <json>``. Each engine gets its own process, so one's thread pools (torch's
OpenMP, OpenBLAS) and heap never sit beside another's timings.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import replace


def run(spec: dict) -> dict:
    import numpy  # noqa: F401  first: threadpoolctl limits only the BLAS libraries already loaded
    from threadpoolctl import threadpool_info, threadpool_limits

    threads = int(spec.get("threads", 1))
    engine = spec["engine"]
    with threadpool_limits(limits=threads, user_api="blas"):
        blas_threads = {p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"}
        if blas_threads != {threads}:
            raise SystemExit(f"BLAS threads are {blas_threads}, not {threads}: threadpoolctl found nothing to limit")
        if engine == "gemm":
            from . import gemm

            return gemm.measure(spec["shapes"], threads, spec.get("min_seconds", 0.05), spec.get("rounds", 5))
        if engine == "conv":  # conv layers by shape: spec["impl"] is runner, torch or gemm
            from . import conv

            return conv.measure(spec["impl"], spec["shapes"], threads, spec.get("min_seconds", 0.2), spec.get("rounds", 5))
        from . import recipes
        from .data import Data

        if engine == "scaling":
            from . import scaling

            return {"rows": scaling.measure(Data(spec["data"], spec.get("limit")), spec.get("quick", False))}

        recipe = recipes.get(spec["recipe"], spec.get("quick", False))
        if spec.get("overrides"):
            recipe = replace(recipe, **spec["overrides"])
        data = Data(spec["data"], recipe.limit)
        warm = replace(recipe, iterations=min(5, recipe.total_steps(len(data.train_x))))
        inner = int(spec.get("inner", recipe.inner))
        if engine == "torch":
            import torch

            torch.set_num_threads(threads)
            from . import torch_reference as impl

            if spec.get("profile"):  # the ConvNet recipe's steps under torch.profiler
                call = lambda r: impl.train(r, data, profile=True)  # noqa: E731
            else:
                call = lambda r: impl.train(r, data)  # noqa: E731
        elif engine == "numpy":
            from . import numpy_reference as impl

            if spec.get("phases"):
                from .timers import Ticks

                def call(r):
                    ticks = Ticks()
                    result = impl.train(r, data, tick=ticks)
                    result["phases"] = dict(ticks.seconds)
                    return result
            else:
                call = lambda r: impl.train(r, data)  # noqa: E731
        elif engine == "runner":
            from . import runner_engine as impl

            sink = spec.get("sink", "noop")
            call = lambda r: impl.train(  # noqa: E731
                r,
                data,
                sink=sink,
                phases=spec.get("phases", False),
                profile=spec.get("profile", False),
                model_type=spec.get("model", "sequential"),
            )
            if sink == "tracking":
                sinks = spec.get("sinks", ["noop", "tracking"])
        elif engine == "gradcheck":
            from . import runner_engine as impl

            call = lambda r: impl.gradcheck(r, data)  # noqa: E731
        else:
            raise SystemExit(f"unknown engine {engine!r}")
        if engine == "runner" and spec.get("watch_pairs"):  # the watch off and on alternating, in one process
            impl.train(warm, data, watch=True)
            pairs: dict = {"off": [], "on": []}
            for i in range(int(spec["watch_pairs"])):
                for which in ("off", "on") if i % 2 == 0 else ("on", "off"):
                    pairs[which].append(impl.train(recipe, data, watch=which == "on"))
            return {"runs": pairs, "blas": _blas(threadpool_info())}
        if engine == "runner" and spec.get("sink") == "tracking":  # noop and tracking alternating, in one process
            impl.train(warm, data)
            out: dict = {s: [] for s in set(sinks)}
            for i in range(inner):
                for s in sinks if i % 2 == 0 else sinks[::-1]:
                    out[s].append(impl.train(recipe, data, sink=s))
            return {"runs": out, "blas": _blas(threadpool_info())}
        if engine != "gradcheck":
            call(warm)
        runs = [call(recipe) for _ in range(inner)]
        result = {"runs": runs, "blas": _blas(threadpool_info()), "n_train": len(data.train_x)}
        if len(runs) > 1:
            result["median_seconds"] = statistics.median(r["seconds"] for r in runs)
        if engine == "runner" and spec.get("gradcheck"):  # the gradient check of the same recipe, a few times
            from . import runner_engine

            result["gradcheck"] = [runner_engine.gradcheck(recipe, data) for _ in range(int(spec["gradcheck"]))]
        if engine == "torch":
            from . import torch_reference

            result["torch"] = torch_reference.info()
        return result


def _blas(info: list[dict]) -> list[dict]:
    return [
        {k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture", "threading_layer")}
        for p in info
        if p.get("user_api") == "blas"
    ]


def main() -> None:
    spec = json.loads(sys.argv[1])
    result = run(spec)
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
