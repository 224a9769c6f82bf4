"""`effnet search`: train every (alpha, beta, gamma) candidate at phi = 1 under one budget and rank them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from effnet.models.complexity import count_macs, profile
from effnet.models.scaling import scale
from effnet.models.specs import NetSpec
from effnet.search.experiment import check_seeds, data_sizes, run_experiment
from effnet.search.grid import Candidate, GridConfig, make_grid
from effnet.search.noise import Scored, Verdict, judge
from effnet.search.results import write_csv, write_json
from effnet.search.runner import RunnerConfig, TrialFn
from effnet.search.trial import fingerprint, proxy_spec, proxy_train_config, render_for, train_trial
from effnet.train import TrainConfig

BASE_ID = "base"


@dataclass(frozen=True)
class SearchConfig:
    """A whole search: base spec, grid, the one training budget every candidate gets, and where it runs."""

    base: NetSpec = field(default_factory=proxy_spec)
    base_ref: str = "proxy"  # how the user named the base (registry name or spec file), for the scale command
    grid: GridConfig = field(default_factory=GridConfig)
    train: TrainConfig = field(default_factory=proxy_train_config)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    out_dir: str = "runs/search"
    # "round" keeps small alphas meaningful on shallow bases; ceil (the TF reference) would add a whole block to
    # every one-block stage for any alpha > 1.
    depth_rounding: str = "round"
    include_base: bool = True  # also train the unscaled base, as a reference row
    restart: bool = False  # discard the journal instead of resuming
    seeds: tuple[int, ...] | None = None  # training seeds, each on the same data; None = (train.seed,)

    def training_seeds(self) -> tuple[int, ...]:
        """The seeds every candidate trains with."""
        return check_seeds(self.seeds if self.seeds is not None else (self.train.seed,))


@dataclass(frozen=True)
class SearchRow:
    """One trained candidate (or the base): measured cost, and accuracy as mean / sd over the seeds."""

    trial_id: str
    alpha: float
    beta: float
    gamma: float
    formula_ratio: float  # alpha * beta^2 * gamma^2
    macs: int
    macs_ratio: float  # measured multiply-adds vs the base
    params: int
    resolution: int
    num_blocks: int
    status: str = "pending"
    seeds: tuple[int, ...] = ()
    val_accs: tuple[float | None, ...] = ()  # final validation top-1 per seed
    val_acc: float | None = None  # their mean (ranking key)
    val_acc_sd: float | None = None  # their sample sd (None with one seed)
    best_val_acc: float | None = None
    outline_acc: float | None = None  # built-in shapes: outline right (mean over seeds)
    outline_acc_sd: float | None = None
    fill_acc: float | None = None  # built-in shapes: fill (plain / stripes) right
    fill_acc_sd: float | None = None
    seconds: float | None = None
    cpu_seconds: float | None = None
    error: str | None = None
    rank: int | None = None


@dataclass(frozen=True)
class SearchResult:
    """Ranked rows (best first, failures last), the base row, the winner and the written files."""

    rows: list[SearchRow]
    base: SearchRow | None
    best: SearchRow | None  # the top candidate only when it beats the runner-up beyond noise (search.noise)
    files: dict[str, Path]
    resumed: int  # trials taken from the journal instead of being run again
    scale_command: str  # "" without a winner
    verdict: Verdict | None = None  # None when no candidate finished
    failed: tuple[str, ...] = ()  # trial ids (base included) with a failed trial: the ranking is partial


def candidate_spec(base: NetSpec, candidate: Candidate, depth_rounding: str = "round") -> NetSpec:
    """The base scaled at phi = 1 by one candidate.

    Resolution is rounded to the pixel, not to a multiple of 8: a 64 px proxy would otherwise map gamma = 1.05
    back to 64 px and 1.15 to 72 px, erasing the differences the grid is meant to measure.
    """
    return scale(
        base,
        width=candidate.beta,
        depth=candidate.alpha,
        resolution=candidate.gamma,
        depth_rounding=depth_rounding,
        resolution_divisor=1,
        name=f"{base.name}-{candidate.trial_id}",
    )


def rank_rows(rows: list[SearchRow]) -> list[SearchRow]:
    """Best validation accuracy first (ties: best-epoch accuracy, then cheaper); failed trials last."""

    def key(row: SearchRow) -> tuple[Any, ...]:
        ok = row.status == "ok" and row.val_acc is not None
        return (not ok, -(row.val_acc or 0.0), -(row.best_val_acc or 0.0), row.macs_ratio, row.trial_id)

    ranked = sorted(rows, key=key)
    return [
        SearchRow(**{**asdict(row), "rank": index + 1 if row.status == "ok" else None})
        for index, row in enumerate(ranked)
    ]


def scale_command(config: SearchConfig, best: SearchRow | None, base_file: Path) -> str:
    """The `effnet scale` line that turns the winning triple into bigger models (step 2)."""
    if best is None:
        return ""
    base = config.base_ref if config.base_ref not in ("proxy", "") else str(base_file)
    off_two = abs(best.formula_ratio / 2 - 1) > 0.1
    return (
        f"effnet scale --base {base} --phi 1 --alpha {best.alpha:g} --beta {best.beta:g} "
        f"--gamma {best.gamma:g} --depth-rounding {config.depth_rounding}" + (" --allow-any-ratio" if off_two else "")
    )


def run_search(
    config: SearchConfig,
    *,
    trial_fn: TrialFn = train_trial,
    on_record: Callable[[dict[str, Any], bool], None] | None = None,
) -> SearchResult:
    """Run (or resume) the search; writes results.json, results.csv and search.png under `config.out_dir`."""
    # Imported when a search runs: importing plots sets matplotlib's file-only backend, which importing this module
    # must not do to a notebook's session.
    from effnet.search.plots import plot_search

    out = Path(config.out_dir)
    num_classes, n_val = data_sizes(config.train)
    base_macs = count_macs(config.base, num_classes=num_classes)
    entries = _entries(config)
    train = render_for(config.train, [spec for _, _, spec in entries])
    summaries, resumed = run_experiment(
        [(trial_id, spec) for trial_id, _, spec in entries],
        train=train,
        runner=config.runner,
        seeds=config.training_seeds(),
        out=out,
        restart=config.restart,
        trial_fn=trial_fn,
        on_record=on_record,
        fingerprint=fingerprint(config.base, train, {"depth_rounding": config.depth_rounding}),
    )
    rows = {
        trial_id: _search_row(trial_id, candidate, spec, num_classes, base_macs, summaries[trial_id].fields())
        for trial_id, candidate, spec in entries
    }
    base_row = rows.pop(BASE_ID, None) if config.include_base else None
    ranked = rank_rows(list(rows.values()))
    verdict = judge_rows(ranked, n_val, num_classes)
    best = ranked[0] if verdict is not None and verdict.winner is not None else None

    config.base.save(out / "base.json")
    command = scale_command(config, best, out / "base.json")
    table = [asdict(row) for row in ([base_row] if base_row else []) + ranked]
    record = _results_record(config, base_macs, num_classes, n_val, table, best, command, verdict)
    files = {"json": write_json(out / "results.json", record), "csv": write_csv(out / "results.csv", table)}
    files["plot"] = plot_search(ranked, base_row, out / "search.png", title=f"search on {config.base.name}")
    failed = tuple(row.trial_id for row in ([base_row] if base_row else []) + ranked if row.status != "ok")
    return SearchResult(ranked, base_row, best, files, resumed, command, verdict, failed)


def _entries(config: SearchConfig) -> list[tuple[str, Candidate, NetSpec]]:
    """(trial id, candidate, its scaled spec) for the base (when included) and every grid point."""
    entries: list[tuple[str, Candidate, NetSpec]] = []
    if config.include_base:
        entries.append((BASE_ID, Candidate(1.0, 1.0, 1.0), config.base))
    entries += [(c.trial_id, c, candidate_spec(config.base, c, config.depth_rounding)) for c in make_grid(config.grid)]
    return entries


def _search_row(
    trial_id: str, candidate: Candidate, spec: NetSpec, num_classes: int, base_macs: int, summary: dict[str, Any]
) -> SearchRow:
    """One candidate's row: its coefficients, measured cost, and its seeds' accuracy summary."""
    macs = count_macs(spec, num_classes=num_classes)
    return SearchRow(
        trial_id,
        candidate.alpha,
        candidate.beta,
        candidate.gamma,
        round(candidate.ratio, 4),
        macs,
        round(macs / base_macs, 4),
        profile(spec, num_classes=num_classes).params,
        spec.resolution,
        spec.num_blocks,
        **summary,
    )


def _results_record(
    config: SearchConfig,
    base_macs: int,
    num_classes: int,
    n_val: int,
    table: list[dict[str, Any]],
    best: SearchRow | None,
    command: str,
    verdict: Verdict | None,
) -> dict[str, Any]:
    """What results.json holds: the search's settings, every row, the pick, its scale command and the verdict."""
    return {
        "base": config.base.name,
        "base_macs": base_macs,
        "num_classes": num_classes,
        "grid": asdict(config.grid),
        "train": config.train.to_dict(),
        "seeds": list(config.training_seeds()),
        "depth_rounding": config.depth_rounding,
        "rows": table,
        "best": asdict(best) if best else None,
        "scale_command": command,
        "verdict": asdict(verdict) if verdict else None,
        "num_val": n_val,
    }


def judge_rows(rows: list[SearchRow], n_val: int, num_classes: int) -> Verdict | None:
    """The noise verdict over the finished candidates (None when none finished)."""
    done = [Scored(row.trial_id, row.val_acc, row.val_acc_sd, len(row.seeds) or 1) for row in rows
            if row.status == "ok" and row.val_acc is not None]  # fmt: skip
    return judge(done, n_val, num_classes) if done else None
