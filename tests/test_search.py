"""Scaling science without training: the grid, the journal, target matching and the Table 3 bases."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

import effnet
from effnet.models.complexity import count_macs, profile
from effnet.search import (
    METHODS,
    GridConfig,
    Journal,
    build_study_models,
    candidate_spec,
    make_grid,
    match_target,
    proxy_spec,
)
from effnet.search.grid import Candidate


def test_default_grid_honours_constraint_and_bounds():
    config = GridConfig()
    grid = make_grid(config)
    assert grid, "the default grid must have candidates"
    for c in grid:
        assert 1.0 <= c.alpha <= 1.5 and 1.0 <= c.beta <= 1.3 and 1.0 <= c.gamma <= 1.3
        assert abs(c.alpha * c.beta**2 * c.gamma**2 / 2 - 1) <= 0.05
    # Independent enumeration: nothing in range that satisfies the constraint is missing.
    steps = [round(1 + 0.1 * i, 6) for i in range(6)]
    expected = {
        (a, b, g)
        for a, b, g in itertools.product(steps, steps[:4], steps[:4])
        if abs(a * b * b * g * g / 2 - 1) <= 0.05
    }
    assert {(c.alpha, c.beta, c.gamma) for c in grid} == expected and len(grid) == 13
    assert len({c.trial_id for c in grid}) == len(grid)


def test_grid_with_user_target_and_inclusive_upper_bound():
    grid = make_grid(GridConfig(alpha=(1.0, 1.3), beta=(1.0, 1.3), gamma=(1.0, 1.3), step=0.1, target=1.5,
                                tolerance=0.05))
    assert all(abs(c.ratio / 1.5 - 1) <= 0.05 for c in grid)
    assert Candidate(1.0, 1.0, 1.2) in grid  # 1.44: 4% off
    assert Candidate(1.1, 1.1, 1.1) not in grid  # 1.61: 7% off
    assert Candidate(1.3, 1.0, 1.1) in grid  # the upper bound 1.3 is inclusive despite float steps


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"alpha": (0.9, 1.5)}, "must be >= 1"),
        ({"beta": (1.4, 1.1)}, "reversed"),
        ({"step": 0.0}, "step must be"),
        ({"step": float("nan")}, "step must be"),
        ({"tolerance": 0.0}, "tolerance"),
        ({"target": 1.0}, "target must be > 1"),
        ({"gamma": (1.0, float("inf"))}, "finite"),
    ],
)
def test_bad_grid_configs_are_value_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        GridConfig(**changes)


def test_empty_or_huge_grids_are_value_errors():
    with pytest.raises(ValueError, match="no \\(alpha, beta, gamma\\)"):
        make_grid(GridConfig(alpha=(1.0, 1.05), beta=(1.0, 1.05), gamma=(1.0, 1.05)))
    with pytest.raises(ValueError, match="max_candidates"):
        make_grid(GridConfig(step=0.01, max_candidates=100))


def test_candidate_spec_scales_the_base_at_phi_one():
    base = proxy_spec()
    spec = candidate_spec(base, Candidate(1.2, 1.1, 1.15))
    assert spec.resolution == round(64 * 1.15)  # to the pixel: 74, not 72
    assert spec.width_mult == pytest.approx(base.width_mult * 1.1)
    assert spec.depth_mult == pytest.approx(base.depth_mult * 1.2)
    assert count_macs(spec, num_classes=12) > count_macs(base, num_classes=12)


def test_journal_appends_survives_a_torn_line_and_checks_the_search(tmp_path):
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, "abc")
    journal.record({"trial_id": "t1", "status": "ok", "metrics": {"final_val_acc": 0.5}})
    with open(path, "a") as handle:
        handle.write('{"kind": "trial", "trial_id": "t2", "sta')  # killed mid-write
    journal = Journal(path, "abc")
    assert set(journal.finished()) == {"t1"}
    journal.record({"trial_id": "t3", "status": "failed", "error": "boom"})
    assert set(journal.finished()) == {"t1", "t3"}
    assert all(json.loads(line) for line in path.read_text().splitlines()[:2])
    with pytest.raises(ValueError, match="different search"):
        Journal(path, "other")
    assert Journal(path, "other", restart=True).finished() == {}
    # A journal whose header is missing (the file was deleted and recreated under a running search) is refused.
    path.write_text('{"kind": "trial", "trial_id": "t1", "status": "ok"}\n')
    with pytest.raises(ValueError, match="header"):
        Journal(path, "abc")


@pytest.mark.parametrize("target", [2.0, 4.0])
@pytest.mark.parametrize("base_name", ["efficientnet_b0", "proxy"])
def test_study_models_hit_each_target_for_all_four_methods(base_name, target):
    base = proxy_spec() if base_name == "proxy" else effnet.get_spec(base_name)
    models = build_study_models(base, (target,), num_classes=1000)
    assert [m.method for m in models] == ["base", *METHODS]
    for model in models[1:]:
        assert abs(model.ratio / target - 1) <= 0.10, (model.method, model.ratio)
        assert model.matched
        assert model.macs == count_macs(model.spec, num_classes=1000)
    width, depth, resolution, compound = models[1:]
    assert width.spec.resolution == depth.spec.resolution == base.resolution
    assert width.spec.num_blocks == base.num_blocks and resolution.spec.num_blocks == base.num_blocks
    assert depth.spec.stages[-1].out_channels == base.stages[-1].out_channels
    # Compound grows all three multipliers (a shallow proxy's repeats may still round to the same count).
    assert compound.spec.resolution > base.resolution
    assert compound.spec.width_mult > base.width_mult and compound.spec.depth_mult > base.depth_mult


def test_match_target_rejects_bad_requests():
    base = proxy_spec()
    with pytest.raises(ValueError, match="targets must be > 1"):
        match_target(base, "width", 0.5)
    with pytest.raises(ValueError, match="unknown scaling method"):
        match_target(base, "height", 2.0)


@pytest.mark.parametrize(("name", "builder"), [("resnet50", "resnet50"), ("mobilenetv2", "mobilenet_v2")])
def test_table3_bases_match_torchvision_and_scale(name, builder):
    torchvision = pytest.importorskip("torchvision")
    reference = getattr(torchvision.models, builder)(weights=None)
    spec = effnet.get_spec(name)
    assert profile(spec).params == sum(p.numel() for p in reference.parameters())
    # The scaling engine works on them: compound phi=1 and each method at 2x multiply-adds.
    bigger = effnet.compound_scale(spec, 1.0)
    assert count_macs(bigger) > count_macs(spec)
    for method in ("width", "compound"):
        assert match_target(spec, method, 2.0).matched
    model = effnet.create_model(match_target(spec, "depth", 2.0).spec, num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)
