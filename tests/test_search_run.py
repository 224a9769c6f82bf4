"""Searches and studies that really train (tiny budgets): Ray vs sequential, kill and resume, failing trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from effnet.search import (
    GridConfig,
    RunnerConfig,
    SearchConfig,
    StudyConfig,
    TrialTask,
    proxy_spec,
    proxy_train_config,
    ray_available,
    run_search,
    run_study,
    train_trial,
)
from effnet.search.plots import plot_search

# Three candidates: (1, 1.2, 1.2), (1.2, 1, 1.2), (1.2, 1.2, 1).
TINY_GRID = GridConfig(alpha=(1.0, 1.2), beta=(1.0, 1.2), gamma=(1.0, 1.2), step=0.2, tolerance=0.2)


def tiny_train():
    config = proxy_train_config(epochs=1, num_train=32, num_val=16, batch_size=16, seed=3)
    return config.replace(data=config.data.__class__(num_train=32, num_val=16, seed=3, render_size=40))


def tiny_base():
    return proxy_spec(width=0.25, resolution=32)


def flaky_trial(task: TrialTask) -> dict:
    """The real trial, except that the widest candidate fails like a worker running out of memory."""
    if task.trial_id == "a1.200-b1.200-g1.000":
        raise MemoryError("simulated: not enough memory for this candidate")
    return train_trial(task)


def _search(tmp_path: Path, backend: str, workers: int) -> object:
    config = SearchConfig(base=tiny_base(), grid=TINY_GRID, train=tiny_train(),
                          runner=RunnerConfig(backend=backend, workers=workers, threads=1),
                          out_dir=str(tmp_path / backend), include_base=False)
    return run_search(config, trial_fn=flaky_trial)


@pytest.mark.slow
@pytest.mark.skipif(not ray_available(), reason="needs the ray extra")
def test_search_on_ray_and_sequential_agree_and_record_failures(tmp_path):
    sequential = _search(tmp_path, "sequential", 1)
    on_ray = _search(tmp_path, "ray", 2)
    for result in (sequential, on_ray):
        assert [row.status for row in result.rows] == ["ok", "ok", "failed"]
        failed = result.rows[-1]
        assert failed.trial_id == "a1.200-b1.200-g1.000" and "MemoryError" in failed.error and failed.rank is None
        assert all(0.0 <= row.val_acc <= 1.0 for row in result.rows[:2])
        for key in ("json", "csv", "plot"):
            assert result.files[key].stat().st_size > 0
        saved = json.loads(result.files["json"].read_text())
        if result.best is not None:  # a winner only beyond noise
            assert saved["best"]["trial_id"] == result.best.trial_id
            assert f"--alpha {result.best.alpha:g}" in result.scale_command
        else:
            assert saved["best"] is None and result.scale_command == "" and saved["verdict"]["winner"] is None
    # Same seed, same threads per trial: the same ranking and the same accuracies, wherever trials ran.
    assert [r.trial_id for r in sequential.rows] == [r.trial_id for r in on_ray.rows]
    assert [r.val_acc for r in sequential.rows] == [r.val_acc for r in on_ray.rows]
    # Ray really ran the trials in worker processes (the journal records each trial's process).
    journal = [json.loads(line) for line in (tmp_path / "ray" / "journal.jsonl").read_text().splitlines()]
    assert {entry["pid"] for entry in journal if entry.get("kind") == "trial"} - {os.getpid()}


def test_sequential_search_without_ray_journals_and_resumes(tmp_path):
    config = SearchConfig(base=tiny_base(), grid=TINY_GRID, train=tiny_train(),
                          runner=RunnerConfig(backend="sequential", threads=1), out_dir=str(tmp_path))
    seen = []
    first = run_search(config, trial_fn=flaky_trial, on_record=lambda record, resumed: seen.append(resumed))
    assert seen == [False] * 4 and first.base is not None and first.base.macs_ratio == 1.0
    journal = (tmp_path / "journal.jsonl").read_text().splitlines()
    failed = [json.loads(line) for line in journal if '"failed"' in line]
    assert len(failed) == 1 and "simulated: not enough memory" in failed[0]["error"]
    # A rerun takes every finished trial (failed ones too) from the journal and trains nothing.
    seen.clear()
    again = run_search(config, trial_fn=flaky_trial, on_record=lambda record, resumed: seen.append(resumed))
    assert seen == [True] * 4 and again.resumed == 4
    assert [(r.trial_id, r.val_acc) for r in again.rows] == [(r.trial_id, r.val_acc) for r in first.rows]
    assert (tmp_path / "journal.jsonl").read_text().splitlines() == journal
    # --retry-failed runs only the failed one again.
    retry = SearchConfig(**{**config.__dict__, "runner": RunnerConfig(backend="sequential", threads=1,
                                                                      retry_failed=True)})
    run_search(retry, trial_fn=train_trial, on_record=lambda record, resumed: seen.append(resumed))
    assert seen[4:] == [True, True, True, False]
    # A journal of another search is refused rather than silently mixed in.
    other = SearchConfig(**{**config.__dict__, "train": tiny_train().replace(epochs=2)})
    with pytest.raises(ValueError, match="different search"):
        run_search(other, trial_fn=train_trial)


@pytest.mark.slow
def test_killed_search_resumes_with_finished_trials_kept(tmp_path):
    out = tmp_path / "search"
    command = [sys.executable, "-m", "effnet.cli", "search", "--alpha", "1", "1.2", "--beta", "1", "1.2",
               "--gamma", "1", "1.2", "--step", "0.2", "--tolerance", "0.2", "--base-resolution", "32",
               "--num-train", "32", "--num-val", "16", "--epochs", "1", "--batch-size", "16",
               "--backend", "sequential", "--threads", "1", "--out", str(out)]
    journal = out / "journal.jsonl"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if journal.exists() and journal.read_text().count('"kind": "trial"') >= 2:
            break
        time.sleep(0.2)
    assert process.poll() is None, "the search finished before it could be killed; give it more candidates"
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = [json.loads(line) for line in journal.read_text().splitlines() if '"kind": "trial"' in line]
    assert 2 <= len(before) < 4
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"({len(before)} trials resumed from the journal, not re-run)" in rerun.stdout
    after = [json.loads(line) for line in journal.read_text().splitlines() if '"kind": "trial"' in line]
    # Finished trials kept byte for byte (same process id: not trained again), the rest run once each.
    assert after[: len(before)] == before
    assert sorted(entry["trial_id"] for entry in after) == sorted({entry["trial_id"] for entry in after})
    assert len(after) == 4
    verdict = json.loads((out / "results.json").read_text())["verdict"]  # 16 val images: a winner only beyond noise
    assert ("effnet scale --base" in rerun.stdout) == (verdict["winner"] is not None) and (out / "search.png").exists()
    assert verdict["message"] in rerun.stdout


def test_study_trains_every_method_at_each_target(tmp_path):
    config = StudyConfig(base=tiny_base(), targets=(2.0,), train=tiny_train(),
                         runner=RunnerConfig(backend="sequential", threads=1), out_dir=str(tmp_path))
    result = run_study(config)
    assert [row.method for row in result.rows] == ["base", "width", "depth", "resolution", "compound"]
    for row in result.rows[1:]:
        assert row.status == "ok" and row.matched and abs(row.ratio / 2 - 1) <= 0.1
    verdict = result.verdicts()[2.0]  # a winner only beyond noise (16 val images: none at this budget)
    assert set(result.verdicts()) == {2.0} and result.winners() == ({2.0: verdict.winner} if verdict.winner else {})
    saved = json.loads(result.files["json"].read_text())
    assert [row["method"] for row in saved["rows"]] == [row.method for row in result.rows]
    assert result.files["plot"].stat().st_size > 0


def test_search_plot_without_results_still_writes_a_file(tmp_path):
    assert plot_search([], None, tmp_path / "empty.png").stat().st_size > 0


def test_default_trial_budget_is_the_main_commands():
    from effnet.train.config import RECIPES

    config = proxy_train_config()
    quick = RECIPES["quick"]
    assert (config.epochs, config.batch_size) == (quick["epochs"], quick["batch_size"])
    assert (config.data.num_train, config.data.num_val) == (5000, 1000)
    assert {key: getattr(config, key) for key in ("optimizer", "lr", "crop_scale")} == {
        key: quick[key] for key in ("optimizer", "lr", "crop_scale")}


def test_shapes_are_drawn_at_the_largest_trial_resolution():
    from effnet.search.trial import render_for

    train = proxy_train_config()
    small, large = proxy_spec(resolution=64), proxy_spec(resolution=128)
    assert render_for(train, [small]) is train  # 96 px drawing is enough for 64 px
    assert render_for(train, [small, large]).data.render_size == 128
    folder = train.replace(data=train.data.__class__(name="folder", root="/nowhere"))
    assert render_for(folder, [large]) is folder
