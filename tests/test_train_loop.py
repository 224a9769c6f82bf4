"""The training loop end to end on a tiny network: CLI run folder, SIGKILL + resume, NaN stop, fine-tuning."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from effnet.cli import main
from effnet.data import DataConfig, render_sample
from effnet.models.specs import NetSpec, StageSpec
from effnet.train import TrainConfig, TrainingDiverged, fit, load_checkpoint

TIMING_KEYS = {"img_per_s", "epoch_time_s"}


def tiny_spec() -> NetSpec:
    """Three small stages at 32 px: a full EfficientNet forward/backward in milliseconds."""
    return NetSpec(
        "tiny",
        (
            StageSpec("mbconv", 1, 3, 1, 8, 1, 0.25),
            StageSpec("mbconv", 4, 3, 2, 16, 1, 0.25),
            StageSpec("fused", 4, 3, 2, 24, 2),
        ),
        stem_channels=8,
        head_channels=64,
        resolution=32,
        dropout=0.1,
        drop_path_rate=0.1,
    )


def tiny_data(**changes) -> DataConfig:
    return DataConfig(**{"num_train": 128, "num_val": 48, "render_size": 32, **changes})


def test_cli_train_one_epoch_writes_a_complete_run_folder(tmp_path, capsys):
    spec_path = tiny_spec().save(tmp_path / "tiny.json")
    code = main(
        [
            "train",
            "--model",
            str(spec_path),
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--num-train",
            "128",
            "--num-val",
            "48",
            "--image-size",
            "32",
            "--output-dir",
            str(tmp_path),
            "--run-name",
            "run",
            "--ema-decay",
            "0.999",
            "--quiet",
        ]
    )
    assert code == 0
    run = tmp_path / "run"
    config = TrainConfig.from_yaml(run / "config.yaml")
    assert (config.epochs, config.batch_size, config.model) == (1, 32, str(spec_path))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["global_step"] == 4
    assert 0.0 <= rows[0]["val_acc"] <= 1.0 and "ema_val_acc" in rows[0]
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["epoch"] == 1 and state["step_in_epoch"] == 0 and (run / "checkpoints" / "best.pt").is_file()
    # torch.load(weights_only=True) accepts it: no pickled code.
    torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    capsys.readouterr()
    # effnet eval on the raw weights reproduces the run's own validation numbers.
    assert main(["eval", str(run / "checkpoints" / "last.pt"), "--raw", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["top1"] == pytest.approx(rows[0]["val_acc"])
    assert result["loss"] == pytest.approx(rows[0]["val_loss"], rel=1e-5)


def _train_cmd(spec_path: Path, out: Path, name: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "effnet.cli",
        "train",
        "--model",
        str(spec_path),
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--num-train",
        "128",
        "--num-val",
        "32",
        "--image-size",
        "32",
        "--mixup-alpha",
        "0.2",
        "--deterministic",
        "--checkpoint-every-steps",
        "3",
        "--no-tensorboard",
        "--no-plot",
        "--quiet",
        "--output-dir",
        str(out),
        "--run-name",
        name,
        *extra,
    ]


def _metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    spec_path = tiny_spec().save(tmp_path / "tiny.json")
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    subprocess.run(_train_cmd(spec_path, tmp_path, "full"), check=True, env=env, timeout=300)

    killed = subprocess.Popen(_train_cmd(spec_path, tmp_path, "killed"), env=env)
    first = tmp_path / "killed" / "checkpoints" / "step-00000003.pt"
    deadline = time.time() + 240
    while not first.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=60) == -signal.SIGKILL, "the run finished before it could be killed"
    state = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")
    assert state["step_in_epoch"] > 0, "the test must resume from the middle of an epoch"
    assert len(state["history"]) < 2

    subprocess.run(_train_cmd(spec_path, tmp_path, "killed", "--resume"), check=True, env=env, timeout=300)
    full, resumed = _metrics(tmp_path / "full"), _metrics(tmp_path / "killed")
    assert len(full) == len(resumed) == 2
    for expected, got in zip(full, resumed, strict=True):
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-7), key


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    config = TrainConfig(
        data=tiny_data(),
        epochs=3,
        batch_size=32,
        image_size=32,
        lr=1e30,
        warmup_epochs=0,
        checkpoint_every_steps=1,
        output_dir=str(tmp_path),
        run_name="nan",
        tensorboard=False,
        plot=False,
    )
    with pytest.raises(TrainingDiverged, match="loss became (nan|inf).*last good checkpoint is"):
        fit(config, spec=tiny_spec(), progress=False)
    state = load_checkpoint(tmp_path / "nan" / "checkpoints" / "last.pt")
    assert all(torch.isfinite(value).all() for value in state["model"].values() if value.is_floating_point())


def _write_folder_dataset(root: Path, classes: dict[str, int], per_class: int) -> None:
    for name, label in classes.items():
        folder = root / name
        folder.mkdir(parents=True)
        found, index = 0, 0
        while found < per_class:
            image, sample_label = render_sample(7, "train", index, 32)
            if sample_label == label:
                image.save(folder / f"{index}.png")
                found += 1
            index += 1


def test_finetune_from_checkpoint_with_new_class_count_and_frozen_backbone(tmp_path):
    base = fit(
        TrainConfig(
            data=tiny_data(),
            epochs=1,
            batch_size=32,
            image_size=32,
            output_dir=str(tmp_path),
            run_name="base",
            tensorboard=False,
            plot=False,
        ),
        spec=tiny_spec(),
        progress=False,
    )
    source = load_checkpoint(base.run_dir / "checkpoints" / "last.pt")["model"]
    _write_folder_dataset(tmp_path / "three", {"circle": 0, "square": 3, "cross": 9}, per_class=12)
    config = TrainConfig.from_recipe(
        "finetune",
        data=DataConfig(name="folder", root=str(tmp_path / "three"), val_fraction=0.25),
        weights=str(base.run_dir / "checkpoints" / "last.pt"),
        epochs=2,
        freeze_epochs=1,
        batch_size=9,
        image_size=32,
        output_dir=str(tmp_path),
        run_name="tuned",
        tensorboard=False,
        plot=False,
        keep_last=3,
        frozen_stages=2,
    )
    result = fit(config, spec=tiny_spec(), progress=False)
    assert result.epochs == 2 and 0.0 <= result.final_val_acc <= 1.0
    steps = sorted((result.run_dir / "checkpoints").glob("step-*.pt"))
    after_frozen, after_all = (load_checkpoint(path)["model"] for path in steps[-2:])
    assert after_all["classifier.weight"].shape == (3, 64)
    backbone = [key for key in source if not key.startswith("classifier.")]
    # Epoch 1: the backbone (BN statistics included) is exactly the source checkpoint; the head learned.
    assert all(torch.equal(after_frozen[key], source[key]) for key in backbone)
    assert not torch.equal(after_frozen["classifier.weight"], after_all["classifier.weight"])
    # Epoch 2: unfrozen, the backbone trains too, except the stem and the first 2 stages (frozen_stages).
    assert not torch.equal(after_all["stages.2.1.project.conv.weight"], source["stages.2.1.project.conv.weight"])
    frozen = [key for key in backbone if key.startswith(("stem.", "stages.0.", "stages.1."))]
    assert frozen and all(torch.equal(after_all[key], source[key]) for key in frozen)


def test_progressive_learning_changes_size_and_dropout_per_stage(tmp_path):
    config = TrainConfig(
        data=tiny_data(num_train=64),
        epochs=2,
        batch_size=32,
        progressive=True,
        progressive_stages=2,
        progressive_image_size=(32, 48),
        progressive_dropout=(0.0, 0.3),
        progressive_mixup=(0.0, 0.2),
        output_dir=str(tmp_path),
        run_name="prog",
        tensorboard=False,
        plot=False,
        ema_decay=0,
    )
    result = fit(config, spec=tiny_spec(), progress=False)
    rows = result.history
    assert [row["image_size"] for row in rows] == [32, 48]
    assert [row["dropout"] for row in rows] == [0.0, 0.3]
    assert [row["mixup_alpha"] for row in rows] == [0.0, 0.2]
    assert [row["magnitude"] for row in rows] == [5, 15]  # Table 6 "S" range for a small model
    log = (result.run_dir / "train.log").read_text()
    assert "progressive stage 1: epoch 1, image 32px" in log and "stage 2: epoch 2, image 48px" in log


def test_speed_and_memory_options_train(tmp_path):
    config = TrainConfig(data=tiny_data(num_train=64, num_val=16), epochs=1, batch_size=32, image_size=32,
                         channels_last=True, amp="bf16", grad_checkpointing=True, memory_efficient_act=True,
                         optimizer="adamw", lr=1e-3, schedule="cosine", output_dir=str(tmp_path), run_name="fast",
                         tensorboard=False, plot=False)
    result = fit(config, spec=tiny_spec(), progress=False)
    row = result.history[0]
    assert torch.isfinite(torch.tensor([row["train_loss"], row["val_loss"]])).all()


def test_ctrl_c_saves_a_checkpoint_and_exits(tmp_path):
    spec_path = tiny_spec().save(tmp_path / "tiny.json")
    command = _train_cmd(spec_path, tmp_path, "stopped")
    command[command.index("--epochs") + 1] = "50"
    command[command.index("--checkpoint-every-steps") + 1] = "0"
    run = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "stopped" / "train.log"
    deadline = time.time() + 120
    while (not log.exists() or "epoch 1/50" not in log.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130
    assert f"effnet train --resume {tmp_path / 'stopped'}" in stderr
    state = load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")
    assert state["global_step"] > 8  # saved at the interruption, past the end-of-epoch-1 checkpoint
