"""Scaling science: the alpha/beta/gamma grid search (paper step 1) and compound vs single-dimension studies."""

from effnet.search.experiment import Summary, mean_sd, run_experiment
from effnet.search.grid import Candidate, GridConfig, make_grid
from effnet.search.grid_search import SearchConfig, SearchResult, SearchRow, candidate_spec, run_search
from effnet.search.journal import Journal
from effnet.search.runner import (
    RunnerConfig,
    TrialTask,
    execute_trial,
    ray_available,
    resolve_search_backend,
    run_trials,
)
from effnet.search.study import (
    METHODS,
    ScaledModel,
    StudyConfig,
    StudyResult,
    StudyRow,
    build_study_models,
    match_target,
    run_study,
    scaled_spec,
)
from effnet.search.trial import proxy_spec, proxy_train_config, train_trial

__all__ = [
    "METHODS",
    "Candidate",
    "GridConfig",
    "Journal",
    "RunnerConfig",
    "ScaledModel",
    "SearchConfig",
    "SearchResult",
    "SearchRow",
    "StudyConfig",
    "StudyResult",
    "StudyRow",
    "Summary",
    "TrialTask",
    "build_study_models",
    "candidate_spec",
    "execute_trial",
    "make_grid",
    "match_target",
    "mean_sd",
    "proxy_spec",
    "proxy_train_config",
    "ray_available",
    "resolve_search_backend",
    "run_experiment",
    "run_search",
    "run_study",
    "run_trials",
    "scaled_spec",
    "train_trial",
]
