"""Runs in a bucket (`storage.root: s3://...`), against a real S3 server on 127.0.0.1.

The server is moto's (`ThreadedMotoServer`, the test extra): a real HTTP S3 API that pyarrow,
Ray and boto3 talk to over the network, as they would to MinIO or AWS; no file-system call is
mocked. The credentials are the made-up ones tests/conftest.py puts in the environment before Ray
starts, so trial processes read them as cloud nodes do.

The sweep is tests/test_reliability_ray.py's driver-kill scenario with its run in the bucket: the
driver is killed with SIGKILL mid-sweep, `--resume` finishes it from the bucket, and the table
equals the same trials run uninterrupted on local disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xsweep.cli import main
from xsweep.config import load_config
from xsweep.errors import XsweepError
from xsweep.record import parse_record, read_record, read_records
from xsweep.storage import Mirror, join, listing, read_bytes
from xsweep.sweep.prepare import prepare_inputs
from xsweep.train.downstream import CHECKPOINT_FILE

from test_reliability_ray import EXPERIMENT, history, reference, same_table, wait_for, wait_until_idle

BUCKET = "xsweep-runs"


@pytest.fixture(scope="module")
def endpoint(s3_endpoint):
    """host:port of the module's S3 server on 127.0.0.1 (conftest.py), holding the bucket BUCKET."""
    s3_client(s3_endpoint).create_bucket(Bucket=BUCKET)
    return s3_endpoint


def root_of(endpoint: str, bucket: str = BUCKET) -> str:
    return f"s3://{bucket}/runs?endpoint_override={endpoint}&scheme=http"


def s3_client(endpoint: str):
    import boto3

    return boto3.client("s3", endpoint_url=f"http://{endpoint}")


def write_experiment(folder: Path, name: str, root: str, *, lrs: str = "0.03", seeds: str = "0, 1",
                     epochs: int = 40) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(EXPERIMENT.format(name=name, lrs=lrs, seeds=seeds, epochs=epochs, root=json.dumps(root)))
    return path


def records_in(run_uri: str) -> dict[str, object]:
    """The trial records in the bucket now, by trial id. A record that does not parse is read again:
    while a trial overwrote its record, moto's server was seen to answer a GET of it with a body
    mixing two versions (this suite, 2026-12-04), which S3's PUT semantics rule out. An object that
    stays unreadable fails the test: what is checked is that each object a run writes is whole."""
    out = {}
    for rel in listing(join(run_uri, "trials")):
        if rel.endswith("/record.json"):
            uri = join(run_uri, "trials", rel)
            for attempt in range(10):
                try:
                    out[rel.split("/")[0]] = parse_record(read_bytes(uri), uri)
                    break
                except XsweepError:
                    if attempt == 9:
                        raise
                    time.sleep(0.1)
    return out


# --- errors before anything runs ----------------------------------------------------------------


def run_cli(folder: Path, root: str, capsys) -> tuple[int, str]:
    config = write_experiment(folder, "refused", root)
    status = main(["run", str(config)])
    return status, capsys.readouterr().err


@pytest.mark.timeout(120)
def test_a_missing_bucket_is_an_error_before_anything_runs(endpoint, tmp_path, capsys):
    status, err = run_cli(tmp_path, root_of(endpoint, "no-such-bucket"), capsys)
    assert status == 2
    assert "the bucket 'no-such-bucket'" in err and "does not exist" in err and "storage.root" in err
    assert "fix: create it" in err and "Traceback" not in err
    assert "no-such-bucket" not in [b["Name"] for b in s3_client(endpoint).list_buckets()["Buckets"]]


@pytest.mark.timeout(120)
def test_an_unreachable_endpoint_is_an_error_before_anything_runs(tmp_path, capsys):
    import socket

    with socket.socket() as probe:  # a port nothing listens on once released
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    status, err = run_cli(tmp_path, root_of(closed), capsys)
    assert status == 2
    assert "cannot reach the bucket of" in err and "storage.root" in err and "fix: check the endpoint" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.timeout(120)
def test_no_permission_to_write_is_an_error_before_anything_runs(endpoint, tmp_path, capsys, monkeypatch):
    """Credentials that may read the bucket but not write to it: moto checks IAM policies once
    its authentication is switched on."""
    import boto3
    from moto import settings

    iam = boto3.client("iam", endpoint_url=f"http://{endpoint}")
    s3_client(endpoint).create_bucket(Bucket="xsweep-read-only")
    iam.create_user(UserName="reader")
    iam.put_user_policy(UserName="reader", PolicyName="read", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:ListBucket", "s3:HeadBucket", "s3:GetObject"],
                       "Resource": "*"}]}))
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    status, err = run_cli(tmp_path, root_of(endpoint, "xsweep-read-only"), capsys)
    assert status == 2
    assert "cannot write under" in err and "s3:PutObject" in err and "storage.root" in err
    assert key["SecretAccessKey"] not in err and key["AccessKeyId"] not in err


@pytest.mark.timeout(120)
def test_credentials_in_the_uri_are_refused_and_not_echoed(tmp_path, capsys):
    status, err = run_cli(tmp_path, "s3://XSWEEPKEY:very-secret-value@xsweep-runs/runs", capsys)
    assert status == 2
    assert "carries credentials" in err and "AWS_ACCESS_KEY_ID" in err
    assert "very-secret-value" not in err and "XSWEEPKEY" not in err


@pytest.mark.timeout(120)
def test_tensorboard_on_a_bucket_without_logs_or_on_gs_says_what_to_do(endpoint, capsys):
    assert main(["tensorboard", join(root_of(endpoint), "no-such-run")]) == 2
    err = capsys.readouterr().err
    assert "no TensorBoard logs in 's3://xsweep-runs/runs/no-such-run/tensorboard'" in err and "fix: " in err
    assert main(["tensorboard", "gs://some-bucket/runs/quickstart"]) == 2
    err = capsys.readouterr().err
    assert "not gs://" in err and "fix: copy the run's tensorboard/ folder here" in err


# --- a sweep into the bucket: driver killed, resumed ---------------------------------------------


@pytest.fixture(scope="module")
def bucket_sweep(tmp_path_factory, endpoint, ray_session):
    folder = tmp_path_factory.mktemp("bucket-sweep")
    root = root_of(endpoint)
    config = write_experiment(folder, "cut", root)
    prepare_inputs(load_config(config), log=lambda _: None)  # the cache the subprocesses reuse
    run_uri, log = join(root, "cut"), folder / "driver.log"
    address = ray_session.get_runtime_context().gcs_address

    def driver(*extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "xsweep", "run", str(config), "--address", address, *extra],
                                cwd=Path(__file__).resolve().parents[1], stdout=log.open("a"), stderr=subprocess.STDOUT)

    first = driver()

    def one_done_one_cut() -> dict | None:
        records = records_in(run_uri)
        done = [r for r in records.values() if r.status == "completed"]
        running = [r for r in records.values() if r.status == "running" and len(r.dev_history) >= 3]
        return {"done": done[0], "cut": running[0]} if done and running else None

    state = wait_for(one_done_one_cut, "one finished trial and one with 3 evaluations, in the bucket", 240, log,
                     every_s=0.5)
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=30) == -signal.SIGKILL
    wait_until_idle(ray_session, log)

    s3 = s3_client(endpoint)
    key = f"runs/cut/trials/{state['done'].trial_id}/record.json"
    cut = f"runs/cut/trials/{state['cut'].trial_id}"
    head = s3.head_object(Bucket=BUCKET, Key=key)
    before = {"done_bytes": read_bytes(join(run_uri, "trials", state["done"].trial_id, "record.json")),
              "done_etag": head["ETag"], "done_modified": head["LastModified"],
              "cut": records_in(run_uri)[state["cut"].trial_id],
              "cut_has_checkpoint": f"{cut}/{CHECKPOINT_FILE}" in keys_of(s3, "runs/cut/")}

    time.sleep(1.1)  # LastModified has one-second resolution: a rewrite after this would show
    resumed = driver("--resume")
    assert resumed.wait(timeout=400) == 0, log.read_text()[-3000:]
    local = folder / "copy"
    Mirror(run_uri, local).pull()
    return {"run_uri": run_uri, "key": key, "cut": cut, "state": state, "before": before, "log": log,
            "copy": local, "s3": s3, "reference": reference(config, folder / "reference"), "folder": folder}


def keys_of(s3, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


@pytest.mark.timeout(900)
def test_a_bucket_run_resumes_after_the_driver_is_killed(bucket_sweep):
    b = bucket_sweep
    # Finished trials are not re-run: their record object is the same, not even rewritten.
    head = b["s3"].head_object(Bucket=BUCKET, Key=b["key"])
    assert read_bytes(join(b["run_uri"], "trials", b["state"]["done"].trial_id, "record.json")) == b["before"]["done_bytes"]
    assert (head["ETag"], head["LastModified"]) == (b["before"]["done_etag"], b["before"]["done_modified"])
    assert "1 already completed, 1 to run" in b["log"].read_text()
    # The cut-off trial restarts from the checkpoint it had pushed, and ends as an uninterrupted one.
    assert b["before"]["cut_has_checkpoint"]
    cut_before = b["before"]["cut"]
    after = read_record(b["copy"] / "trials" / cut_before.trial_id / "record.json")
    assert after.status == "completed"
    assert len(after.resumed_at) == 1 and after.resumed_at[0] >= cut_before.dev_history[-1].step > 0
    reference_record = read_record(b["reference"] / "trials" / after.trial_id / "record.json")
    assert history(after) == pytest.approx(history(reference_record), abs=1e-6)
    assert f"{b['cut']}/{CHECKPOINT_FILE}" not in keys_of(b["s3"], "runs/cut/")  # deleted once it ended


@pytest.mark.timeout(900)
def test_a_bucket_run_gives_the_table_of_a_local_run(bucket_sweep):
    b = bucket_sweep
    same_table(b["copy"], b["reference"])
    for name in ("config.yaml", "manifest.json", "results/results.md", "results/results.csv"):
        assert (b["copy"] / name).is_file(), name
    trial = b["state"]["done"].trial_id
    assert any((b["copy"] / "trials" / trial / "best").iterdir())  # the best prompt and head
    assert list((b["copy"] / "tensorboard" / trial).glob("events.out.tfevents.*"))
    assert keys_of(b["s3"], "runs/cut/ray/")  # Ray Tune's own folder follows the same root
    assert "run directory: s3://xsweep-runs/runs/cut" in b["log"].read_text()


@pytest.mark.timeout(900)
def test_no_credential_is_written_to_the_run_or_its_logs(bucket_sweep):
    b = bucket_sweep
    secrets = [os.environ["AWS_SECRET_ACCESS_KEY"].encode(), os.environ["AWS_ACCESS_KEY_ID"].encode()]
    keys = keys_of(b["s3"], "runs/cut/")
    assert len(keys) > 10
    for key in keys:
        body = b["s3"].get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert not any(secret in body for secret in secrets), key
    log = b["log"].read_bytes()
    assert not any(secret in log for secret in secrets)


@pytest.mark.timeout(900)
def test_report_works_from_the_bucket_alone(bucket_sweep, capsys):
    b = bucket_sweep
    for key in keys_of(b["s3"], "runs/cut/results/"):
        b["s3"].delete_object(Bucket=BUCKET, Key=key)
    assert main(["report", b["run_uri"]]) == 0
    out = capsys.readouterr().out
    assert "results table: s3://xsweep-runs/runs/cut/results/results.md\n" in out
    assert read_bytes(join(b["run_uri"], "results", "results.md")) == (b["copy"] / "results" / "results.md").read_bytes()
    assert keys_of(b["s3"], "runs/cut/tensorboard/_groups/")


@pytest.mark.timeout(900)
def test_predict_runs_a_trial_named_by_its_uri_in_the_bucket(bucket_sweep, capsys):
    """`xsweep predict <trial URI>` prints what it prints for the trial's local copy; a URI that
    names no trial is xsweep's error, naming the URI."""
    b = bucket_sweep
    trial = b["state"]["done"].trial_id
    utterances = ["wake me up at seven", "what is the weather like tomorrow"]
    assert main(["predict", str(b["copy"] / "trials" / trial), *utterances]) == 0
    local = capsys.readouterr().out
    assert main(["predict", join(b["run_uri"], "trials", trial), *utterances]) == 0
    assert capsys.readouterr().out == local and len(local.splitlines()) == 2
    assert main(["predict", join(b["run_uri"], "trials", "t999-none"), "hello"]) == 2
    err = capsys.readouterr().err
    assert "s3://xsweep-runs/runs/cut/trials/t999-none?endpoint_override=" in err
    assert "no completed trial here: record.json, labels.json, best/, the run's manifest.json missing" in err
    assert "fix: pass a completed trial of a bucket run" in err
    assert main(["predict", join(b["run_uri"], "results"), "hello"]) == 2
    assert "results?endpoint_override=" in (err := capsys.readouterr().err) and "not a trial's URI" in err


@pytest.mark.timeout(900)
def test_tensorboard_reads_the_event_files_in_the_bucket(bucket_sweep):
    """A TensorBoard server started as `xsweep tensorboard <uri>` starts it (its S3 reader is boto3,
    told the endpoint by S3_ENDPOINT) serves a trial's curves from the bucket, the same as the
    event files of the local copy hold."""
    import urllib.parse
    import urllib.request

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from xsweep.report.tensorboard import start_tensorboard
    from xsweep.storage import tensorboard_source

    b = bucket_sweep
    trial = b["state"]["done"].trial_id
    logdir, env = tensorboard_source(join(b["run_uri"], "tensorboard"))
    assert logdir == "s3://xsweep-runs/runs/cut/tensorboard" and env["S3_ENDPOINT"].startswith("http://127.0.0.1:")
    local = EventAccumulator(str(b["copy"] / "tensorboard" / trial), size_guidance={"scalars": 0})
    local.Reload()
    tag = "dev/en-US/accuracy" if "dev/en-US/accuracy" in local.Tags()["scalars"] else local.Tags()["scalars"][0]
    want = [[e.step, pytest.approx(e.value)] for e in local.Scalars(tag)]
    assert want

    process, url = start_tensorboard(logdir, env=env)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def served():
        query = urllib.parse.urlencode({"run": trial, "tag": tag})
        try:
            with opener.open(f"{url}data/plugin/scalars/scalars?{query}", timeout=10) as response:
                return [[step, value] for _, step, value in json.loads(response.read())]
        except OSError:  # not loaded yet: TensorBoard answers 400 until it has read the run
            return None

    try:
        got = wait_for(served, "TensorBoard to serve the trial's curve from the bucket", 180, b["log"], every_s=2)
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert got == want


@pytest.mark.timeout(900)
def test_fused_trials_and_the_evaluation_stage_write_the_same_results_to_a_bucket_as_to_disk(
        endpoint, tmp_path, ray_session):
    """Two trials fused in one process (`sweep.fuse: 2`), tested afterwards by the evaluation
    stage's Ray tasks, each working in its own copy of the bucket: results.md is the local run's,
    byte for byte."""
    from xsweep.sweep.runner import run_sweep

    text = EXPERIMENT.replace("  evaluate: all  # every trial tests inside itself, as the in-process reference does\n",
                              "  evaluate: selected\n  fuse: 2\n")
    assert text != EXPERIMENT
    runs = {}
    for where, root in (("bucket", root_of(endpoint)), ("disk", str(tmp_path / "runs"))):
        config = tmp_path / f"{where}.yaml"
        config.write_text(text.format(name="staged", lrs="0.03, 0.3", seeds="0", epochs=6, root=json.dumps(root)))
        runs[where], failed = run_sweep(load_config(config), log=lambda _: None)
        assert failed == []
    assert runs["bucket"] == join(root_of(endpoint), "staged")
    copy = tmp_path / "copy"
    Mirror(runs["bucket"], copy).pull()
    assert main(["report", runs["bucket"]]) == 0 and main(["report", str(runs["disk"])]) == 0
    Mirror(runs["bucket"], copy).pull("results")
    tested = [r for r in read_records(copy) if r.test_scores]
    assert tested and all(set(r.test_scores) == {"en-US", "de-DE"} for r in tested)
    assert (copy / "results" / "results.md").read_bytes() == (runs["disk"] / "results" / "results.md").read_bytes()
    same_table(copy, runs["disk"])


STAGED = """\
name: {name}
method: apt
backbone: {{name: "builtin:micro", dropout: false}}
data: {{path: demo, max_seq_len: 32, shots: 5, eval_locales: [en-US, de-DE]}}
prompt: {{kind: layer, length: 4, dropout: 0}}
head: {{kind: vanilla, dropout: 0}}
align: {{data: demo, targets: [de, es], epochs: 1, batch_size: 16, max_seq_len: 48, num_workers: 2,
         cpus_per_worker: 0.5, retrieval: demo, retrieval_languages: [deu, spa]}}
optim: {{epochs: 3, batch_size: 16, patience: 1000, lr: 0.01}}
sweep: {{seeds: [0], max_concurrent_trials: 1, evaluate: all}}
resources: {{cpus_per_trial: 0.5, num_workers: 2}}
storage: {{root: {root}}}
"""


@pytest.mark.timeout(600)
def test_an_alignment_stage_and_a_worker_group_trial_keep_everything_in_the_bucket(endpoint, tmp_path, ray_session,
                                                                                  capsys):
    """APT from its alignment stage (2 Ray Train workers) with the trial on a worker group of 2:
    each rank 0 writes through its own copy, so the stage, its retrieval scores and the trial are
    in the bucket; the trial started from the stage's prompt there (the same results as the trial
    run in one process from that prompt), and `--resume` reuses the stage from the bucket alone."""
    from xsweep.sweep.prepare import demo_data_dir
    from xsweep.sweep.runner import plan_trials
    from xsweep.sweep.bucket import pull_stage
    from xsweep.sweep.stages import plan_align_stages, run_align_stages

    from test_worker_trials import assert_same_results, run_alone

    root = root_of(endpoint)
    config = tmp_path / "staged.yaml"
    config.write_text(STAGED.format(name="aligned", root=json.dumps(root)))
    assert main(["run", str(config)]) == 0
    out = capsys.readouterr().out
    assert "stage 1/1: alignment of the layer prompt x 4 on 2 worker(s)" in out
    assert f"retrieval table: {join(root, 'aligned', 'results', 'retrieval.md')}\n" in out

    s3 = s3_client(endpoint)
    stage_keys = keys_of(s3, "runs/stages/align-layer4-")
    [name] = {key.split("/")[2] for key in stage_keys}
    for file in ("align.json", "prompt.safetensors", "prompt.json", "retrieval.json"):
        assert f"runs/stages/{name}/{file}" in stage_keys, file
    assert [key for key in stage_keys if "/checkpoints/epoch_001/" in key]
    assert keys_of(s3, "runs/stages/_ray/")  # Ray Train's own folder of the stage
    assert "Tatoeba retrieval accuracy" in read_bytes(join(root, "aligned", "results", "retrieval.md")).decode()

    [record] = records_in(join(root, "aligned")).values()
    stage_uri = join(root, "stages", name)
    assert record.status == "completed" and record.workers == 2
    assert record.config["prompt"]["init_from"] == stage_uri
    assert keys_of(s3, f"runs/aligned/trials/{record.trial_id}/ray_train/")  # the worker group's Ray Train folder
    assert keys_of(s3, f"runs/aligned/trials/{record.trial_id}/best/")
    assert keys_of(s3, f"runs/aligned/tensorboard/{record.trial_id}/")

    # The same trial in one process, from the stage's prompt in the bucket (storage.local_folder).
    cfg = load_config(config)
    inputs = prepare_inputs(cfg, log=lambda _: None)
    stages = plan_align_stages(cfg, inputs.backbone_path, demo_dir=demo_data_dir(), local_root=tmp_path / "stages")
    [spec] = plan_trials(cfg, tmp_path / "alone", inputs, stages)
    assert spec.config["prompt"]["init_from"] == stage_uri
    assert_same_results(record, run_alone(spec))

    # From the bucket alone, the stage planned again (as by another experiment on the same root) is
    # reused instead of aligned again, and --resume of the run runs nothing.
    modified = s3.head_object(Bucket=BUCKET, Key=f"runs/stages/{name}/align.json")["LastModified"]
    for stage in stages:
        pull_stage(stage.uri, stage.output_dir)  # what the driver of a run does before running its stages
    said: list[str] = []
    run_align_stages(stages, cfg, log=said.append)
    assert said == [f"stage 1/1: alignment of the layer prompt x 4: reusing the finished run in {stage_uri}"]
    assert main(["run", str(config), "--resume"]) == 0
    assert "1 already completed, 0 to run" in capsys.readouterr().out
    assert s3.head_object(Bucket=BUCKET, Key=f"runs/stages/{name}/align.json")["LastModified"] == modified
