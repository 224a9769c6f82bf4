"""Faults around a training run's folder: no run lost, none silently wrong (issue 12 items 1-7, 9).

Each test injects a fault into a real run of a tiny network (32 px, 128 images): damaged, missing or stale
checkpoint files, a killed run's missing log rows, a second writer, a changed resume, a diverging run, a full disk.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from effnet.cli import main
from effnet.models.specs import NetSpec, StageSpec
from effnet.train import load_checkpoint
from effnet.train.checkpoint import CorruptCheckpoint, atomic_save, content_checksum
from effnet.train.runfolder import RunFolderLock

TIMING = {"img_per_s", "epoch_time_s"}


def tiny_spec() -> NetSpec:
    """Three small stages at 32 px (milliseconds per step)."""
    stages = (
        StageSpec("mbconv", 1, 3, 1, 8, 1, 0.25),
        StageSpec("mbconv", 4, 3, 2, 16, 1, 0.25),
        StageSpec("fused", 4, 3, 2, 24, 1),
    )
    return NetSpec("tiny", stages, stem_channels=8, head_channels=32, resolution=32, dropout=0.1)


def train_args(spec: Path, out: Path, name: str, *extra: str) -> list[str]:
    """`effnet train` of the tiny spec: 2 epochs x 8 steps, checkpoints every 3 steps, deterministic."""
    return ["train", "--model", str(spec), "--epochs", "2", "--batch-size", "16", "--num-train", "128",
            "--num-val", "32", "--image-size", "32", "--deterministic", "--checkpoint-every-steps", "3",
            "--no-tensorboard", "--no-plot", "--quiet", "--output-dir", str(out), "--run-name", name, *extra]


def metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def assert_same_rows(expected: list[dict], got: list[dict]) -> None:
    assert len(expected) == len(got)
    for want, have in zip(expected, got, strict=True):
        assert have.keys() == want.keys()
        for key, value in want.items():
            assert have[key] == pytest.approx(value, rel=1e-6, abs=1e-7), key


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path, list[dict]]:
    """One finished reference run (copied by tests that damage it): spec path, run folder, its metrics."""
    root = tmp_path_factory.mktemp("ref")
    spec = tiny_spec().save(root / "tiny.json")
    assert main(train_args(spec, root, "ref")) == 0
    return spec, root / "ref", metrics(root / "ref")


def copy_run(finished, tmp_path: Path, name: str = "run") -> Path:
    run = tmp_path / name
    shutil.copytree(finished[1], run)
    (run / ".lock").unlink(missing_ok=True)
    return run


def replace_bytes(path: Path, data: bytes) -> None:
    """Give `path` new content in a new inode (last.pt is a hard link of a step file)."""
    path.unlink()
    path.write_bytes(data)


def last_line_of(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback
    return err[0]


# ------------------------------------------------------------------------------------- newest intact checkpoint
def test_resume_skips_damaged_checkpoints_and_ends_like_the_uninterrupted_run(finished, tmp_path, capsys):
    spec, _, reference = finished
    run = copy_run(finished, tmp_path)
    ckpt = run / "checkpoints"
    assert sorted(p.name for p in ckpt.glob("step-*.pt")) == ["step-00000015.pt", "step-00000016.pt"]
    data = (ckpt / "last.pt").read_bytes()
    noisy = bytearray(data)
    noisy[len(data) // 2 : len(data) // 2 + 4096] = bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).tolist())
    replace_bytes(ckpt / "last.pt", bytes(noisy))  # random bytes inside
    replace_bytes(ckpt / "step-00000016.pt", data[: len(data) // 3])  # truncated
    (run / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text().splitlines()[0] + "\n")
    assert main(train_args(spec, tmp_path, "run", "--resume")) == 0
    log = (run / "train.log").read_text()
    assert "resume: continuing from" in log and "step-00000015.pt" in log and "damaged" in log
    assert_same_rows(reference, metrics(run))
    assert (ckpt / "step-00000016.pt.corrupt").exists()  # set aside, not deleted, and not pruned in its place
    assert load_checkpoint(ckpt / "last.pt")["global_step"] == 16


def test_a_finished_run_with_a_truncated_last_pt_is_repaired_by_its_resume(finished, tmp_path, capsys):
    # Resuming a finished run trains and saves nothing: the damaged last.pt must still be replaced, so that
    # `effnet eval last.pt` works after a resume that reported the run done.
    spec, _, _ = finished
    run = copy_run(finished, tmp_path)
    last = run / "checkpoints" / "last.pt"
    replace_bytes(last, last.read_bytes()[:1000])
    assert main(train_args(spec, tmp_path, "run", "--resume")) == 0
    assert "rewrote it from step-00000016.pt" in (run / "train.log").read_text()
    assert load_checkpoint(last)["global_step"] == 16
    assert main(["eval", str(last)]) == 0


def test_random_bytes_that_still_unpickle_fail_the_checksum(finished, tmp_path):
    state = load_checkpoint(finished[1] / "checkpoints" / "last.pt")
    name = next(iter(state["model"]))
    state["model"][name] = state["model"][name] + 1.0  # changed after the checksum was computed
    atomic_save(state, tmp_path / "tampered.pt")
    with pytest.raises(CorruptCheckpoint, match="does not match the checksum"):
        load_checkpoint(tmp_path / "tampered.pt")
    state["checksum"] = content_checksum(state)
    atomic_save(state, tmp_path / "resealed.pt")
    assert load_checkpoint(tmp_path / "resealed.pt")["global_step"] == 16


def test_deleted_last_pt_resumes_from_the_step_files(finished, tmp_path):
    spec, _, reference = finished
    run = copy_run(finished, tmp_path)
    (run / "checkpoints" / "last.pt").unlink()
    (run / "checkpoints" / "step-00000016.pt").unlink()
    assert main(train_args(spec, tmp_path, "run", "--resume")) == 0
    assert "step-00000015.pt" in (run / "train.log").read_text()
    assert_same_rows(reference, metrics(run))


def test_every_checkpoint_damaged_is_one_line_and_exit_2(finished, tmp_path, capsys):
    spec = finished[0]
    run = copy_run(finished, tmp_path)
    for path in (run / "checkpoints").glob("*.pt"):
        replace_bytes(path, b"PK\x03\x04 not a checkpoint")
    capsys.readouterr()
    assert main(train_args(spec, tmp_path, "run", "--resume")) == 2
    assert "every checkpoint" in last_line_of(capsys)


# ------------------------------------------------------------------------------- a killed run's missing rows
def test_resume_of_a_finished_but_unlogged_epoch_writes_its_metrics_and_log_line(finished, tmp_path):
    spec, _, reference = finished
    run = copy_run(finished, tmp_path)
    # What a SIGKILL right after the final checkpoint leaves: the row lives only in the checkpoint.
    (run / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text().splitlines()[0] + "\n")
    log = run / "train.log"
    log.write_text("".join(line for line in log.read_text().splitlines(True) if not line.startswith("epoch 2/2")))
    assert main(train_args(spec, tmp_path, "run", "--resume")) == 0
    assert_same_rows(reference, metrics(run))
    assert sum(line.startswith("epoch 2/2: train loss") for line in log.read_text().splitlines()) == 1


def test_stale_temp_files_of_killed_writes_are_removed(finished, tmp_path):
    spec = finished[0]
    run = copy_run(finished, tmp_path)
    stale = [run / "checkpoints" / ".step-00000018.pt.k2j3.tmp", run / ".metrics.jsonl.x1.tmp",
             run / "checkpoints" / ".last.pt.123.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    assert main(train_args(spec, tmp_path, "run", "--resume")) == 0
    assert not any(path.exists() for path in stale)


# ------------------------------------------------------------------------------ one writer, no silent overwrite
def test_a_locked_run_folder_refuses_a_second_writer(finished, tmp_path, capsys):
    spec = finished[0]
    run = copy_run(finished, tmp_path)
    before = (run / "config.yaml").read_text()
    lock = RunFolderLock(run).acquire()
    try:
        capsys.readouterr()
        assert main(train_args(spec, tmp_path, "run", "--resume")) == 2
        assert "is in use by another" in last_line_of(capsys)
    finally:
        lock.release()
    assert (run / "config.yaml").read_text() == before


def test_a_finished_run_is_not_overwritten_without_overwrite(finished, tmp_path, capsys):
    spec, _, reference = finished
    run = copy_run(finished, tmp_path)
    capsys.readouterr()
    assert main(train_args(spec, tmp_path, "run", "--epochs", "1")) == 2
    assert "already holds a run" in last_line_of(capsys)
    assert len(metrics(run)) == 2
    assert main(train_args(spec, tmp_path, "run", "--epochs", "1", "--overwrite")) == 0
    assert len(metrics(run)) == 1 and not (run / "checkpoints" / "step-00000015.pt").exists()


# ---------------------------------------------------------------------------------- resumes that cannot work
@pytest.mark.parametrize(
    ("flags", "reason"),
    [(["--batch-size", "32"], "batch_size 16"), (["--width", "2.0"], "cannot resume: the checkpoint holds")],
)
def test_resume_with_a_changed_batch_or_model_is_refused_with_the_reason(finished, tmp_path, capsys, flags, reason):
    spec = finished[0]
    run = copy_run(finished, tmp_path)
    before = (run / "config.yaml").read_text()
    capsys.readouterr()
    assert main(train_args(spec, tmp_path, "run", "--resume", "--epochs", "3", *flags)) == 2
    assert reason in last_line_of(capsys)
    assert (run / "config.yaml").read_text() == before  # refused before anything was rewritten


# -------------------------------------------------------------------------------------------------- NaN
def test_a_diverging_run_keeps_only_finite_checkpoints_and_eval_refuses_nan_weights(finished, tmp_path, capsys):
    spec = finished[0]
    capsys.readouterr()
    code = main(train_args(spec, tmp_path, "nan", "--lr", "1e6", "--warmup-epochs", "0",
                           "--checkpoint-every-steps", "1"))
    assert code == 1
    err = capsys.readouterr().err
    assert "the last good checkpoint is" in err or "no checkpoint had been written yet" in err
    for path in (tmp_path / "nan" / "checkpoints").glob("*.pt"):
        state = load_checkpoint(path)
        assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point()), path
        assert all(torch.isfinite(torch.tensor(row.get("val_loss", 0.0))) for row in state["history"])
    # A checkpoint whose weights are NaN (as older versions could keep) is refused by `effnet eval`.
    state = load_checkpoint(finished[1] / "checkpoints" / "last.pt")
    state["model"] = {k: v.fill_(float("nan")) if v.is_floating_point() else v for k, v in state["model"].items()}
    state["checksum"] = content_checksum(state)
    atomic_save(state, tmp_path / "nan.pt")
    assert main(["eval", str(tmp_path / "nan.pt"), "--raw"]) == 2
    assert "NaN/inf" in last_line_of(capsys)


# ------------------------------------------------------------------------------------- config file faults
def test_yaml_alias_bomb_is_refused_before_anything_is_created(tmp_path, capsys):
    lines = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for level in "bcdefghij":
        previous = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [*{previous}, *{previous}, *{previous}, *{previous}, *{previous}]")
    lines.append("progressive_image_size: [*j, *j]")
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    assert main(["train", "--config", str(tmp_path / "bomb.yaml"), "--output-dir", str(tmp_path / "out")]) == 2
    assert "aliases" in last_line_of(capsys)
    assert not (tmp_path / "out").exists()


def test_run_name_cannot_leave_the_output_dir(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["train", "--output-dir", str(out), "--run-name", "../escaped", "--epochs", "1"]) == 2
    assert "run_name must be a plain folder name" in last_line_of(capsys)
    assert not (tmp_path / "escaped").exists() and not out.exists()


# ---------------------------------------------------------------------------------------------- disk full
def test_disk_full_is_one_line_and_leaves_no_temp_files(finished, tmp_path):
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux unshare to mount a small tmpfs in a user namespace")
    mount = tmp_path / "small"
    mount.mkdir()
    spec = finished[0]
    cmd = " ".join([sys.executable, "-m", "effnet.cli", *train_args(spec, mount, "full")])
    script = f"mount -t tmpfs -o size=300k tmpfs {mount} && cd {mount} && {cmd}"
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1k tmpfs {mount}"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {probe.stderr.decode().strip()}")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script + "; echo rc=$?; ls -a full full/checkpoints"],
                          capture_output=True, text=True, timeout=300)
    assert "rc=2" in done.stdout, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("effnet train:")]
    assert len(errors) == 1 and "disk full" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert ".tmp" not in done.stdout  # the listing of the run folder: no half-written files left


# ------------------------------------------------------------------------------------------ SIGKILL timing loop
@pytest.mark.slow
def test_repeated_sigkills_around_checkpoint_writes_end_like_the_uninterrupted_run(finished, tmp_path):
    """Kill the run four times, each right as a new step checkpoint appears (so inside or just after a write),
    resume after each kill, and compare the finished run with the uninterrupted reference."""
    import os
    import signal
    import time

    spec, _, reference = finished
    command = [sys.executable, "-m", "effnet.cli",
               *train_args(spec, tmp_path, "killed", "--checkpoint-every-steps", "1")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ckpt, seen, kills = tmp_path / "killed" / "checkpoints", 0, 0
    for attempt in range(4):
        run = subprocess.Popen(command + (["--resume"] if attempt else []), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 240
        while run.poll() is None and time.time() < deadline:
            steps = [int(p.name[5:13]) for p in ckpt.glob("step-*.pt")] if ckpt.is_dir() else []
            if steps and max(steps) > seen:
                seen = max(steps)
                break
            time.sleep(0.005)
        run.send_signal(signal.SIGKILL)
        kills += run.wait(timeout=60) == -signal.SIGKILL
        if seen >= 15:
            break
    assert kills >= 2, "the runs finished before they could be killed"
    done = subprocess.run(command + ["--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same_rows(reference, metrics(tmp_path / "killed"))
    assert not list(ckpt.glob(".*tmp*")) and not list((tmp_path / "killed").glob(".*tmp*"))


# ------------------------------------------------------------------------------------------------- SIGTERM
def test_sigterm_checkpoints_says_so_in_one_line_and_the_resumed_run_ends_like_the_uninterrupted_one(
    finished, tmp_path
):
    """What schedulers and containers send before SIGKILL: a real SIGTERM to a real `effnet train` process."""
    import os
    import signal
    import time

    spec, _, reference = finished
    command = [sys.executable, "-m", "effnet.cli", *train_args(spec, tmp_path, "termed")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = tmp_path / "termed" / "checkpoints" / "step-00000003.pt"  # --checkpoint-every-steps 3
    deadline = time.time() + 240
    while run.poll() is None and not first.exists() and time.time() < deadline:
        time.sleep(0.005)
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 143, stderr[-2000:]  # 128 + SIGTERM: an unfinished job to the scheduler
    line = stderr.strip().splitlines()[-1]
    step = load_checkpoint(tmp_path / "termed" / "checkpoints" / "last.pt")["global_step"]
    assert 3 <= step < 16  # saved where it stopped, before the run's end (2 epochs x 8 steps)
    assert line == (f"effnet train: stopped by SIGTERM at step {step}; checkpoint saved; continue with: "
                    f"effnet train --resume {tmp_path / 'termed'}")
    assert "Traceback" not in stderr
    done = subprocess.run(command + ["--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same_rows(reference, metrics(tmp_path / "termed"))
