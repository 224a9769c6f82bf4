"""One checkpoint schema (effnet.train.checkpoint.Checkpoint): a file written before the typed record reads back
into it unchanged, and the record writes the same content."""

from __future__ import annotations

from pathlib import Path

import torch

from effnet.train.checkpoint import Checkpoint, CheckpointManager, load_checkpoint
from effnet.weights import load_model, read_file
from effnet.weights.reader import content_checksum

OLD = Path(__file__).parent / "fixtures" / "checkpoint_v1.pt"  # written by make_old_checkpoint.py


def test_a_checkpoint_from_before_the_record_reads_into_it():
    checkpoint = Checkpoint.read(OLD)
    assert (checkpoint.spec.name, checkpoint.num_classes, checkpoint.steps_per_epoch) == ("tiny", 10, 4)
    assert (checkpoint.epoch, checkpoint.step_in_epoch, checkpoint.global_step) == (1, 2, 6)
    assert len(checkpoint.history) == 1 and len(checkpoint.rng) == 1 and checkpoint.running[2] == 32.0
    assert checkpoint.ema is not None and set(checkpoint.ema) == {"module", "num_updates", "decay"}
    assert checkpoint.config is not None and checkpoint.config["batch_size"] == 16
    assert checkpoint.preprocess is not None and checkpoint.preprocess.input_size == 32
    # Written again through the record, the content is the same to the checksum's last byte.
    stored = load_checkpoint(OLD)
    assert content_checksum(checkpoint.to_dict()) == stored["checksum"]
    assert set(checkpoint.to_dict()) == set(stored) - {"checksum"}


def test_the_manager_writes_the_record_and_the_loader_reads_it(tmp_path):
    checkpoint = Checkpoint.read(OLD)
    path = CheckpointManager(tmp_path, keep_last=1).save(checkpoint, is_best=True)
    assert path.name == "step-00000006.pt" and (tmp_path / "checkpoints" / "best.pt").is_file()
    again = Checkpoint.read(tmp_path / "checkpoints" / "last.pt")
    assert again.global_step == 6 and again.class_names == checkpoint.class_names
    assert all(torch.equal(again.model[key], value) for key, value in checkpoint.model.items())
    assert read_file(path).kind == "checkpoint"
    model = load_model(path)  # the EMA weights, with the run's preprocessing and class names
    ema = checkpoint.ema["module"]  # type: ignore[index]
    assert torch.equal(model.classifier.weight, ema["classifier.weight"])
    assert model.preprocess == checkpoint.preprocess and model.class_names == checkpoint.class_names
