"""One readable line per trial event, instead of Ray's own verbose output."""

from __future__ import annotations

from typing import Callable

from ray.tune import Callback


class ProgressPrinter(Callback):
    def __init__(self, log: Callable[[str], None]):
        self.log = log

    def on_trial_start(self, iteration, trials, trial, **info):
        self.log(f"  start    {trial.config['spec']['trial_id']}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        name = trial.config["spec"]["trial_id"]
        if result.get("status") == "completed":
            tests = result.get("test", {})
            mean = sum(v["accuracy"] for v in tests.values()) / max(1, len(tests))
            self.log(f"  done     {name}: best dev {result['best_dev']:.3f}, "
                     f"test avg over {len(tests)} locales {mean:.3f}")
        elif result.get("status") == "diverged":
            self.log(f"  diverged {name} at step {result.get('step')}")
        elif "dev" in result:
            dev = next(iter(result["dev"].values()))["accuracy"]
            self.log(f"  epoch {result['epoch']:>3} {name}: loss {result['train']['loss']:.3f}, dev {dev:.3f}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.log(f"  failed   {trial.config['spec']['trial_id']}")
