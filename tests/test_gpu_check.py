"""bench/gpu_check.py, the ready GPU check, runs end to end on tiny shapes on a CPU (`--smoke`) the
way it must run on a bare GPU image: with ray, datasets, optuna, seqeval and pyarrow unimportable.

The check runs in a subprocess whose `sys.meta_path` starts with a finder that raises ImportError
for those names; torch and transformers (what the image has) are imported before it, and every
top-level module the check loads after them must be xsweep, bench or the standard library's.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from xsweep.paths import REPO_ROOT

pytestmark = pytest.mark.timeout(120)

BLOCKED = ("ray", "datasets", "optuna", "seqeval", "pyarrow")
# Runs bench.gpu_check as `python -m` would, behind the blocker; argv after `-c` goes to the check.
BARE_IMAGE = f"""
import json, runpy, sys
import torch, transformers
from transformers import XLMRobertaConfig, XLMRobertaModel
BLOCKED = {BLOCKED!r}

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not on a bare GPU image")
        return None

image = {{name.split(".")[0] for name in sys.modules}}
sys.meta_path.insert(0, Blocker())
sys.argv = ["bench.gpu_check", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("bench.gpu_check", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
finally:
    try:
        import seqeval  # the blocker must still be in place, or this test proves nothing
        active = False
    except ImportError:
        active = True
    added = sorted({{name.split(".")[0] for name in sys.modules}} - image - set(sys.stdlib_module_names))
    print("IMPORTS " + json.dumps({{"added": added, "blocker_active": active}}))
sys.exit(code)
"""
MEASURED = ("examples_per_s", "tflops", "mfu", "peak_mib")


def run_smoke(out) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", BARE_IMAGE, "--smoke", "--out", str(out)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=110)


def figure(value, allowed: tuple[str, ...]) -> bool:
    """A positive finite number, or one of the documented words for a figure that does not apply."""
    if isinstance(value, str):
        return value in allowed
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_gpu_check_smoke_runs_on_a_bare_image(tmp_path):
    done = run_smoke(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    imports = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("IMPORTS "))[8:])
    assert imports["blocker_active"]
    assert set(imports["added"]) <= {"xsweep", "bench"}, f"loaded {imports['added']} beyond torch/transformers"

    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["device"]["type"] == "cpu" and report["versions"]["torch"] and report["versions"]["transformers"]
    assert report["date"] and report["setup"]["flops"] and "fused_features" in report["setup"]["fused_forward"]

    # Training steps: fp32, TF32 and bf16 at two batch sizes; TF32 is CUDA-only, peak memory CUDA-only,
    # and a CPU has no known peak, so its MFU is "unknown".
    train = {(r["precision"], r["batch"]): r for r in report["train"]}
    assert set(train) == {(p, b) for p in ("fp32", "tf32", "bf16") for b in (4, 8)}
    for (precision, _), row in train.items():
        if precision == "tf32":
            assert all(row[key] == "n/a" for key in MEASURED)
            continue
        assert figure(row["examples_per_s"], ()) and figure(row["step_ms"], ()) and figure(row["tflops"], ())
        assert row["mfu"] == "unknown" and row["peak_mib"] == "n/a" and row["timed_steps"] >= 1

    fused = {r["k"]: r for r in report["fused"]}
    assert sorted(fused) == [1, 4, 8]
    for row in fused.values():
        assert figure(row["examples_per_s"], ()) and figure(row["speedup_over_k1"], ())
        assert row["mfu"] == "unknown" and row["peak_mib"] == row["peak_mib_per_member"] == "n/a"
    assert fused[1]["speedup_over_k1"] == 1.0

    nli = report["nli"]
    assert figure(nli["pairs_per_s"], ()) and figure(nli["tflops"], ()) and nli["mfu"] == "unknown"
    assert nli["utterances"] * nli["intents"] >= nli["pairs_per_forward"]

    memory = report["memory_per_trial"]
    assert memory["precision"] == "bf16" and memory["peak_mib"] == "n/a" and figure(memory["backbone_weights_mib"], ())

    # The table is printed, with every section.
    for heading in ("training steps (one PT trial)", "fused trials", "NLI scoring", "memory per trial", "MFU counts"):
        assert heading in done.stdout
    assert sum(line.split()[0] in ("fp32", "tf32", "bf16") for line in done.stdout.splitlines() if line.strip()) == 6


def test_peak_table_matches_device_names_most_specific_first():
    from bench.gpu_check import UNKNOWN, peak_for_name

    assert peak_for_name("NVIDIA H100 80GB HBM3")["bf16"] == peak_for_name("NVIDIA H200")["bf16"] == 989.4
    assert peak_for_name("NVIDIA H100 PCIe")["tf32"] == 378.0
    assert peak_for_name("NVIDIA H200 NVL")["bf16"] == 835.5
    assert peak_for_name("NVIDIA A100-SXM4-80GB")["bf16"] == 312.0  # not the A10's
    assert peak_for_name("NVIDIA A10")["bf16"] == 125.0
    assert peak_for_name("NVIDIA L40S")["bf16"] == 362.1 and peak_for_name("NVIDIA L4")["bf16"] == 121.0
    for name in ("NVIDIA A10G", "NVIDIA GeForce RTX 4090", "NVIDIA H100 80GB HBM3 MIG 1g.10gb"):
        assert peak_for_name(name) == UNKNOWN
