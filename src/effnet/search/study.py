"""Compound vs single-dimension scaling (paper Figures 3 and 8): models matched to multiply-add targets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from effnet.models.complexity import count_macs, profile
from effnet.models.scaling import ALPHA, BETA, GAMMA, check_coefficients, scale
from effnet.models.specs import NetSpec
from effnet.search.experiment import check_seeds, data_sizes, run_experiment
from effnet.search.noise import Scored, Verdict, judge
from effnet.search.results import write_csv, write_json
from effnet.search.runner import RunnerConfig, TrialFn
from effnet.search.trial import fingerprint, proxy_spec, proxy_train_config, render_for, train_trial
from effnet.train import TrainConfig

METHODS = ("width", "depth", "resolution", "compound")
MATCH_TOLERANCE = 0.10  # achieved multiply-adds within 10% of the target


@dataclass(frozen=True)
class ScaledModel:
    """A base scaled along one method to a multiply-add target, and what it actually costs."""

    method: str
    target: float  # wanted multiply-adds ratio vs the base
    multiplier: float  # width / depth / resolution multiplier, or phi for compound
    spec: NetSpec
    macs: int
    params: int
    ratio: float  # achieved multiply-adds ratio vs the base

    @property
    def matched(self) -> bool:
        """Whether the achieved ratio is within MATCH_TOLERANCE of the target."""
        return abs(self.ratio / self.target - 1) <= MATCH_TOLERANCE

    @property
    def trial_id(self) -> str:
        """Stable name, used as the journal key."""
        return "base" if self.method == "base" else f"{self.method}-x{self.target:g}"


def scaled_spec(
    base: NetSpec,
    method: str,
    multiplier: float,
    coefficients: tuple[float, float, float] = (ALPHA, BETA, GAMMA),
    depth_rounding: str = "round",
) -> NetSpec:
    """`base` grown along one method: width, depth or resolution alone, or compound (multiplier = phi)."""
    alpha, beta, gamma = coefficients
    if method == "width":
        factors = (multiplier, 1.0, 1.0)
    elif method == "depth":
        factors = (1.0, multiplier, 1.0)
    elif method == "resolution":
        factors = (1.0, 1.0, multiplier)
    elif method == "compound":
        factors = (beta**multiplier, alpha**multiplier, gamma**multiplier)
    else:
        raise ValueError(f"unknown scaling method {method!r}; choose from {', '.join(METHODS)}")
    width, depth, resolution = factors
    # Resolution to the pixel (not a multiple of 8), so resolution-only scaling of a small base can hit a target.
    return scale(
        base,
        width=width,
        depth=depth,
        resolution=resolution,
        depth_rounding=depth_rounding,
        resolution_divisor=1,
        name=f"{base.name}-{method}{multiplier:.4g}",
    )


def _bisect(ratio_of: Callable[[float], float], target: float, low: float, high_start: float) -> float:
    """Multiplier whose measured ratio is closest to `target` (ratios only grow with the multiplier)."""
    high = high_start
    while ratio_of(high) < target:
        low, high = high, high * 2
        if high > 1e3:
            raise ValueError(f"cannot reach a multiply-add ratio of {target:g}: the multiplier ran past 1000")
    # Ratios move in steps (channel / repeat rounding): stop near the target or on the step, then take the
    # closer side of the step.
    while high - low > 1e-3 * high:
        middle = (low + high) / 2
        ratio = ratio_of(middle)
        if abs(ratio / target - 1) < 0.01:
            return middle
        if ratio < target:
            low = middle
        else:
            high = middle
    return min((low, high), key=lambda m: abs(ratio_of(m) / target - 1))


def match_target(
    base: NetSpec,
    method: str,
    target: float,
    *,
    coefficients: tuple[float, float, float] = (ALPHA, BETA, GAMMA),
    num_classes: int = 1000,
    depth_rounding: str = "round",
) -> ScaledModel:
    """Solve for the multiplier that scales `base` along `method` to `target` x its multiply-adds."""
    if not target > 1:
        raise ValueError(f"multiply-add targets must be > 1 (e.g. 2 4 for 2x and 4x the base), got {target}")
    check_coefficients(*coefficients, allow_any_ratio=True)
    base_macs = count_macs(base, num_classes=num_classes)

    def build(multiplier: float) -> NetSpec:
        return scaled_spec(base, method, multiplier, coefficients, depth_rounding)

    def ratio_of(multiplier: float) -> float:
        return count_macs(build(multiplier), num_classes=num_classes) / base_macs

    # Compound searches phi from 0; the others a multiplier from 1.
    low, start = (0.0, 1.0) if method == "compound" else (1.0, 2.0)
    multiplier = _bisect(ratio_of, target, low, start)
    spec = build(multiplier)
    macs = count_macs(spec, num_classes=num_classes)
    return ScaledModel(
        method, target, multiplier, spec, macs, profile(spec, num_classes=num_classes).params, macs / base_macs
    )


def build_study_models(
    base: NetSpec,
    targets: tuple[float, ...],
    methods: tuple[str, ...] = METHODS,
    *,
    coefficients: tuple[float, float, float] = (ALPHA, BETA, GAMMA),
    num_classes: int = 1000,
    depth_rounding: str = "round",
) -> list[ScaledModel]:
    """The base itself plus one model per (method, target), each matched to the target by bisection."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown scaling methods {unknown}; choose from {', '.join(METHODS)}")
    if not targets:
        raise ValueError("give at least one multiply-add target, e.g. --targets 2 4")
    base_macs = count_macs(base, num_classes=num_classes)
    models = [ScaledModel("base", 1.0, 1.0, base, base_macs, profile(base, num_classes=num_classes).params, 1.0)]
    for target in sorted(set(targets)):
        for method in methods:
            models.append(
                match_target(
                    base,
                    method,
                    target,
                    coefficients=coefficients,
                    num_classes=num_classes,
                    depth_rounding=depth_rounding,
                )
            )
    return models


@dataclass(frozen=True)
class StudyConfig:
    """A study: base, multiply-add targets, methods, the shared training budget and where it runs."""

    base: NetSpec = field(default_factory=proxy_spec)
    targets: tuple[float, ...] = (2.0, 4.0)
    methods: tuple[str, ...] = METHODS
    coefficients: tuple[float, float, float] = (ALPHA, BETA, GAMMA)  # for the compound method
    train: TrainConfig = field(default_factory=proxy_train_config)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    out_dir: str = "runs/study"
    depth_rounding: str = "round"  # fine steps, so depth-only can hit a target
    restart: bool = False
    seeds: tuple[int, ...] | None = None  # training seeds, each on the same data; None = (train.seed,)

    def training_seeds(self) -> tuple[int, ...]:
        """The seeds every model trains with."""
        return check_seeds(self.seeds if self.seeds is not None else (self.train.seed,))


@dataclass(frozen=True)
class StudyRow:
    """One trained model of the study; accuracies are the mean (and sample sd) over the seeds."""

    trial_id: str
    method: str
    target: float
    multiplier: float
    width_mult: float
    depth_mult: float
    resolution: int
    num_blocks: int
    macs: int
    ratio: float
    matched: bool
    params: int
    status: str = "pending"
    seeds: tuple[int, ...] = ()
    val_accs: tuple[float | None, ...] = ()
    val_acc: float | None = None
    val_acc_sd: float | None = None
    best_val_acc: float | None = None
    outline_acc: float | None = None
    outline_acc_sd: float | None = None
    fill_acc: float | None = None
    fill_acc_sd: float | None = None
    seconds: float | None = None
    cpu_seconds: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class StudyResult:
    """All rows (base first, then by target and method) and the written files."""

    rows: list[StudyRow]
    files: dict[str, Path]
    resumed: int
    num_val: int = 0  # validation images (0: unknown, no verdicts)
    num_classes: int = 0
    failed: tuple[str, ...] = ()  # models with a failed trial: the comparison is partial

    def verdicts(self) -> dict[float, Verdict]:
        """At each target, whether its most accurate method beats the others beyond noise (search.noise)."""
        if self.num_val < 1 or self.num_classes < 2:
            return {}
        done: dict[float, list[Scored]] = {}
        for row in self.rows:
            if row.method != "base" and row.status == "ok" and row.val_acc is not None:
                scored = Scored(row.method, row.val_acc, row.val_acc_sd, len(row.seeds) or 1)
                done.setdefault(row.target, []).append(scored)
        return {target: judge(models, self.num_val, self.num_classes) for target, models in sorted(done.items())}

    def winners(self) -> dict[float, str]:
        """The method that wins at each target, for targets where one beats the others beyond noise."""
        return {target: v.winner for target, v in self.verdicts().items() if v.winner is not None}


def run_study(
    config: StudyConfig,
    *,
    trial_fn: TrialFn = train_trial,
    on_record: Callable[[dict[str, Any], bool], None] | None = None,
) -> StudyResult:
    """Build the matched models, train each under the same budget (resuming), write results and study.png."""
    # Imported when a study runs: importing plots sets matplotlib's file-only backend, which importing this module
    # must not do to a notebook's session.
    from effnet.search.plots import plot_study

    out = Path(config.out_dir)
    num_classes, n_val = data_sizes(config.train)
    models = build_study_models(
        config.base,
        config.targets,
        config.methods,
        coefficients=config.coefficients,
        num_classes=num_classes,
        depth_rounding=config.depth_rounding,
    )
    extra = {"depth_rounding": config.depth_rounding, "coefficients": list(config.coefficients)}
    train = render_for(config.train, [m.spec for m in models])
    summaries, resumed = run_experiment(
        [(m.trial_id, m.spec) for m in models],
        train=train,
        runner=config.runner,
        seeds=config.training_seeds(),
        out=out,
        restart=config.restart,
        trial_fn=trial_fn,
        on_record=on_record,
        fingerprint=fingerprint(config.base, train, extra),
        command="study",
    )
    rows = [_study_row(model, config.base, summaries[model.trial_id].fields()) for model in models]
    table = [asdict(row) for row in rows]
    result = StudyResult(rows, {}, resumed, n_val, num_classes)
    files = {
        "json": write_json(out / "results.json", _results_record(config, result, table)),
        "csv": write_csv(out / "results.csv", table),
        "plot": plot_study(rows, out / "study.png", title=f"scaling study on {config.base.name}"),
    }
    config.base.save(out / "base.json")
    return StudyResult(rows, files, resumed, n_val, num_classes, tuple(r.trial_id for r in rows if r.status != "ok"))


def _study_row(model: ScaledModel, base: NetSpec, summary: dict[str, Any]) -> StudyRow:
    """One matched model's row: how it was scaled, its measured cost, and its seeds' accuracy summary."""
    return StudyRow(
        model.trial_id,
        model.method,
        model.target,
        round(model.multiplier, 4),
        round(model.spec.width_mult / base.width_mult, 4),
        round(model.spec.depth_mult / base.depth_mult, 4),
        model.spec.resolution,
        model.spec.num_blocks,
        model.macs,
        round(model.ratio, 4),
        model.matched,
        model.params,
        **summary,
    )


def _results_record(config: StudyConfig, result: StudyResult, table: list[dict[str, Any]]) -> dict[str, Any]:
    """What results.json holds: the study's settings, every row, and each target's winner and verdict."""
    return {
        "base": config.base.name,
        "targets": list(config.targets),
        "methods": list(config.methods),
        "coefficients": list(config.coefficients),
        "train": config.train.to_dict(),
        "seeds": list(config.training_seeds()),
        "rows": table,
        "winners": {str(k): v for k, v in result.winners().items()},
        "verdicts": {str(k): asdict(v) for k, v in result.verdicts().items()},
        "num_val": result.num_val,
    }
