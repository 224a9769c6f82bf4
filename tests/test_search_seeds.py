"""Studies and searches over several training seeds: mean / sd columns, same validation images, shapes groups."""

from __future__ import annotations

import csv
import json
import statistics

import pytest
import yaml

from effnet.cli import main
from effnet.search import mean_sd
from effnet.search.experiment import check_seeds, summarize, trial_key


def test_mean_sd_is_the_sample_statistics():
    assert mean_sd([]) == (None, None)
    assert mean_sd([0.4]) == (0.4, None)
    values = [0.5, 0.7, 0.65]
    mean, sd = mean_sd(values)
    assert mean == pytest.approx(statistics.mean(values)) and sd == pytest.approx(statistics.stdev(values))
    assert trial_key("base", 1, (0, 1)) == "base-seed1" and trial_key("base", 0, (0,)) == "base"
    with pytest.raises(ValueError, match="must differ"):
        check_seeds([0, 0])
    with pytest.raises(ValueError, match="at least one"):
        check_seeds([])


def test_a_failed_seed_fails_the_model_but_keeps_the_others_numbers():
    records = [{"status": "ok", "metrics": {"final_val_acc": 0.5, "best_val_acc": 0.6}, "seconds": 2.0},
               {"status": "failed", "metrics": {}, "error": "MemoryError: out\ntrace", "seconds": 1.0}]
    summary = summarize(records, (0, 1))
    assert summary.status == "failed" and summary.error == "MemoryError: out"
    assert summary.val_accs == (0.5, None) and summary.val_acc == 0.5 and summary.val_acc_sd is None
    assert summary.seconds == 3.0 and summary.outline_acc is None


def test_study_with_three_seeds_reports_mean_sd_and_outline_fill(tmp_path, capsys):
    out = tmp_path / "study"
    code = main(["study", "--targets", "2", "--methods", "resolution", "--base-resolution", "32",
                 "--num-train", "24", "--num-val", "20", "--epochs", "1", "--batch-size", "12",
                 "--seeds", "0", "1", "2", "--backend", "sequential", "--threads", "1", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "seeds 0 1 2 (mean +- sd)" in printed and "outline ok" in printed and "+-" in printed
    saved = json.loads((out / "results.json").read_text())
    assert saved["seeds"] == [0, 1, 2]
    journal = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    trials = {entry["trial_id"]: entry for entry in journal if entry.get("kind") == "trial"}
    assert sorted(trials) == sorted(f"{m}-seed{s}" for m in ("base", "resolution-x2") for s in (0, 1, 2))
    for row in saved["rows"]:
        accs = [trials[f"{row['trial_id']}-seed{s}"]["metrics"]["final_val_acc"] for s in (0, 1, 2)]
        assert row["seeds"] == [0, 1, 2] and row["val_accs"] == accs
        assert row["val_acc"] == pytest.approx(statistics.mean(accs))
        assert row["val_acc_sd"] == pytest.approx(statistics.stdev(accs))
        for seed in (0, 1, 2):
            metrics = trials[f"{row['trial_id']}-seed{seed}"]["metrics"]
            # The breakdown re-evaluates the final weights: its top-1 is the run's own final val top-1, and a
            # right class needs both the outline and the fill right.
            assert metrics["val_top1_recount"] == pytest.approx(metrics["final_val_acc"])
            assert min(metrics["outline_acc"], metrics["fill_acc"]) >= metrics["final_val_acc"]
        outlines = [trials[f"{row['trial_id']}-seed{s}"]["metrics"]["outline_acc"] for s in (0, 1, 2)]
        assert row["outline_acc"] == pytest.approx(statistics.mean(outlines))
        assert row["outline_acc_sd"] == pytest.approx(statistics.stdev(outlines))
    # Every seed trained on the same data (same data seed: same train and val images); only the training seed moved.
    configs = [yaml.safe_load((out / "trials" / f"base-seed{s}" / "config.yaml").read_text()) for s in (0, 1, 2)]
    assert {c["data"]["seed"] for c in configs} == {0} and [c["seed"] for c in configs] == [0, 1, 2]
    with open(out / "results.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert {"val_acc", "val_acc_sd", "outline_acc", "fill_acc_sd"} <= set(header)
    assert (out / "study.png").stat().st_size > 0


def test_device_cuda_without_a_gpu_is_one_line_and_exit_2(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: --device cuda is valid here")
    assert main(["study", "--device", "cuda", "--out", str(tmp_path / "s")]) == 2
    assert "no GPU is visible here; use --device cpu" in capsys.readouterr().err
