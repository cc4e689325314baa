"""One readable line per trial event, instead of Ray's own verbose output."""

from __future__ import annotations

from typing import Callable

from ray.tune import Callback

from xsweep.sweep.fusion import MEMBER_KEY


class ProgressPrinter(Callback):
    def __init__(self, log: Callable[[str], None]):
        self.log = log

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks into the experiment state; `log` is the driver's (often the
        # builtin print, which cannot be pickled by reference once a library has replaced
        # builtins.print, as Ray Train does in the processes it runs) and is no use elsewhere.
        return {}

    def __setstate__(self, state: dict) -> None:
        self.log = print

    def on_trial_start(self, iteration, trials, trial, **info):
        ids = [spec["trial_id"] for spec in trial.config["specs"]]
        fused = f" (fused: {len(ids)} trials, one backbone forward per step)" if len(ids) > 1 else ""
        self.log(f"  start    {', '.join(ids)}{fused}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        name = result.get(MEMBER_KEY) or trial.config["specs"][0]["trial_id"]
        if result.get("status") == "completed":
            metric = result.get("metric", "accuracy")
            tests = result.get("test", {})
            test = (f", test {metric} avg over {len(tests)} locales "
                    f"{sum(v[metric] for v in tests.values()) / len(tests):.3f}" if tests else "")
            self.log(f"  done     {name}: best dev {metric} {result['best_dev']:.3f}{test}")
        elif result.get("status") == "diverged":
            self.log(f"  diverged {name} at step {result.get('step')}")
        elif result.get("status") == "paused":  # at a pruning milestone (sweep.pruning)
            self.log(f"  paused   {name} at epoch {result['epoch']}: best dev {result.get('metric', 'accuracy')} "
                     f"{result['best_dev']:.3f}")
        elif "dev" in result:
            metric = result.get("metric", "accuracy")
            dev = next(iter(result["dev"].values()))[metric]
            if dev == result.get("best_dev"):  # one line per improvement, not per evaluation
                self.log(f"  epoch {result['epoch']:>3} {name}: loss {result['train']['loss']:.3f}, "
                         f"dev {metric} {dev:.3f} (best so far)")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.log(f"  failed   {', '.join(spec['trial_id'] for spec in trial.config['specs'])}")
