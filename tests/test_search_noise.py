"""`search` and `study` name a winner only beyond noise: seed sd, else the validation sampling error, and never at
chance. The pipeline runs for real (journal, summaries over seeds, results.json, printed table) on recorded
trial results instead of training, so the accuracies are known."""

from __future__ import annotations

import json
import math

import pytest

from effnet.commands.search import _print_search
from effnet.commands.study import _print_study
from effnet.search import GridConfig, RunnerConfig, SearchConfig, StudyConfig, proxy_spec, proxy_train_config
from effnet.search.experiment import summarize
from effnet.search.grid_search import run_search
from effnet.search.noise import Scored, judge
from effnet.search.study import run_study

GRID = GridConfig(alpha=(1.0, 1.2), beta=(1.0, 1.2), gamma=(1.0, 1.2), step=0.2, tolerance=0.2)  # 3 candidates
CANDIDATES = ("a1.000-b1.200-g1.200", "a1.200-b1.000-g1.200", "a1.200-b1.200-g1.000")


def recorded(table: dict[str, list[float]]):
    """A trial function that returns the recorded final accuracy of (model, seed) instead of training."""

    def trial(task) -> dict:
        model, _, seed = task.trial_id.partition("-seed")
        accuracies = table[model]
        return {"final_val_acc": accuracies[int(seed or 0)], "best_val_acc": accuracies[int(seed or 0)]}

    return trial


def search(tmp_path, table: dict[str, list[float]], num_val: int):
    seeds = len(next(iter(table.values())))
    config = SearchConfig(base=proxy_spec(width=0.25, resolution=32), grid=GRID,
                          train=proxy_train_config(epochs=1, num_train=32, num_val=num_val, batch_size=16),
                          runner=RunnerConfig(backend="sequential", threads=1), out_dir=str(tmp_path),
                          seeds=tuple(range(seeds)) if seeds > 1 else None)  # fmt: skip
    return run_search(config, trial_fn=recorded(table))


def test_one_seed_uses_the_binomial_sampling_error_of_the_validation_set():
    # 62% vs 60%: within 2 standard errors of the difference on 200 images, beyond them on 20000.
    for n_val, expect_winner in ((200, False), (20000, True)):
        verdict = judge([Scored("a", 0.62), Scored("b", 0.60)], n_val, num_classes=10)
        expected = 2 * math.sqrt(0.62 * 0.38 / n_val + 0.60 * 0.40 / n_val)
        assert verdict.noise == pytest.approx(expected) and verdict.gap == pytest.approx(0.02)
        assert (verdict.winner == "a") is expect_winner and not verdict.at_chance
        assert "validation sampling error" in verdict.basis


def test_seeds_use_the_standard_error_over_seeds_floored_by_sampling():
    records = {name: [{"status": "ok", "metrics": {"final_val_acc": a}} for a in accs]
               for name, accs in {"a": [0.52, 0.47, 0.58], "b": [0.50, 0.49, 0.51]}.items()}  # fmt: skip
    summaries = {name: summarize(rows, (0, 1, 2)) for name, rows in records.items()}
    scored = [Scored(name, s.val_acc, s.val_acc_sd, 3) for name, s in summaries.items()]
    verdict = judge(scored, n_val=100000, num_classes=10)
    se_a = summaries["a"].val_acc_sd / math.sqrt(3)  # > the sampling error on 100000 images
    se_b = max(summaries["b"].val_acc_sd / math.sqrt(3), math.sqrt(0.5 * 0.5 / 100000))
    # An sd from three seeds is itself rough: Student's t with 2 degrees of freedom, not 2 standard errors.
    assert verdict.noise == pytest.approx(4.303 * math.hypot(se_a, se_b))
    assert verdict.winner is None and "within their noise" in verdict.message and "3 seeds" in verdict.basis
    # docs/search.md's study (per-seed top-1 of resolution and compound at 2x): 6.8 points apart, a paired t-test
    # gives p ~ 0.14, and no winner is named.
    res, comp = summarize_accs([0.772, 0.785, 0.747]), summarize_accs([0.646, 0.741, 0.712])
    verdict = judge([Scored("resolution", *res, 3), Scored("compound", *comp, 3)], n_val=1000, num_classes=10)
    assert verdict.winner is None and verdict.gap == pytest.approx(0.205 / 3)


def summarize_accs(accs: list[float]) -> tuple[float, float]:
    summary = summarize([{"status": "ok", "metrics": {"final_val_acc": a}} for a in accs], tuple(range(len(accs))))
    return summary.val_acc, summary.val_acc_sd


def test_search_at_chance_names_no_winner_and_prints_no_scale_command(tmp_path, capsys):
    # Ten classes, 1000 validation images: 9.4-11.3% is chance, whatever the order.
    table = {"base": [0.101], CANDIDATES[0]: [0.113], CANDIDATES[1]: [0.094], CANDIDATES[2]: [0.108]}
    result = search(tmp_path, table, num_val=1000)
    assert result.rows[0].trial_id == CANDIDATES[0]  # still ranked, but not a winner
    assert result.best is None and result.scale_command == "" and result.verdict.at_chance
    saved = json.loads(result.files["json"].read_text())
    assert saved["best"] is None and saved["scale_command"] == "" and saved["verdict"]["at_chance"]
    _print_search(result)
    printed = capsys.readouterr().out
    assert "no winner: every model is within noise of chance (10.0% for 10 classes" in printed
    assert "effnet scale" not in printed and "best:" not in printed


def test_search_with_a_clear_winner_over_seeds_prints_the_scale_command(tmp_path, capsys):
    table = {"base": [0.70, 0.71], CANDIDATES[0]: [0.86, 0.85], CANDIDATES[1]: [0.74, 0.75],
             CANDIDATES[2]: [0.72, 0.73]}  # fmt: skip
    result = search(tmp_path, table, num_val=1000)
    assert result.best is not None and result.best.trial_id == CANDIDATES[0]
    assert result.verdict.winner == CANDIDATES[0] and result.verdict.gap == pytest.approx(0.11)
    _print_search(result)
    printed = capsys.readouterr().out
    assert "effnet scale --base" in printed and "--alpha 1 --beta 1.2 --gamma 1.2" in printed
    assert f"{CANDIDATES[0]} beats {CANDIDATES[1]} by 11.0 points" in printed


def test_search_whose_top_two_overlap_names_no_winner(tmp_path, capsys):
    table = {"base": [0.60], CANDIDATES[0]: [0.64], CANDIDATES[1]: [0.62], CANDIDATES[2]: [0.50]}
    result = search(tmp_path, table, num_val=400)  # 2 points apart, noise 2 x 3.4 points
    assert result.best is None and not result.verdict.at_chance
    _print_search(result)
    printed = capsys.readouterr().out
    assert f"no winner: {CANDIDATES[0]} (64.0%) and {CANDIDATES[1]} (62.0%) differ by 2.0 points" in printed
    assert "effnet scale" not in printed


def test_study_says_per_target_whether_a_method_wins(tmp_path, capsys):
    accs = {"base": [0.50], "width-x2": [0.61], "depth-x2": [0.60], "resolution-x2": [0.58], "compound-x2": [0.59],
            "width-x4": [0.80], "depth-x4": [0.62], "resolution-x4": [0.63], "compound-x4": [0.64]}  # fmt: skip
    config = StudyConfig(base=proxy_spec(width=0.25, resolution=32), targets=(2.0, 4.0),
                         train=proxy_train_config(epochs=1, num_train=32, num_val=500, batch_size=16),
                         runner=RunnerConfig(backend="sequential", threads=1), out_dir=str(tmp_path))  # fmt: skip
    result = run_study(config, trial_fn=recorded(accs))
    verdicts = result.verdicts()
    assert verdicts[2.0].winner is None and verdicts[4.0].winner == "width"
    assert result.winners() == {4.0: "width"}
    saved = json.loads(result.files["json"].read_text())
    assert saved["winners"] == {"4.0": "width"} and saved["verdicts"]["2.0"]["winner"] is None
    _print_study(result)
    printed = capsys.readouterr().out
    assert "at 2x multiply-adds: no winner: width (61.0%) and depth (60.0%) differ by 1.0 points" in printed
    assert "most accurate at 4x multiply-adds: width 80.0; next: compound 64.0 (width beats compound" in printed
