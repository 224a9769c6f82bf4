"""Benchmark runners on runtimes beyond eager PyTorch: a model exported to onnxruntime or OpenVINO, and effnet's
int8 export.

Each factory returns the lazy `(example input, threads) -> (runner, backend label)` that `latency.Candidate`
expects; the export happens when the candidate's turn comes, into a temporary folder.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from effnet.analysis.timing import Runner, time_runner
from effnet.deploy.export import export_onnx, fold_batchnorm
from effnet.deploy.quantize import QuantizeConfig, calibration_arrays, quantize_model, resolve_backend
from effnet.deploy.runtimes import export_deploy_graph, fix_input_size, predictor, runtime_available

Build = Callable[[torch.Tensor, int], tuple[Runner, str]]


def _export(model: nn.Module, x: torch.Tensor, fold: bool) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="effnet-bench-"))
    if fold:
        return export_deploy_graph(model, folder / "model.onnx", x[:1])
    # Every row deployed at the benchmark's one size.
    return fix_input_size(export_onnx(model.eval(), folder / "model.onnx", x[:1]), x.shape[-2], x.shape[-1])


def _numpy_runner(predict: Callable) -> Runner:
    return lambda batch: predict(batch.numpy())


def onnx_runtime_runner(factory: Callable[[], nn.Module], runtime: str, fold: bool = False) -> Build:
    """The model from `factory()` exported to ONNX (as its authors' `torch.onnx.export` gives it) on `runtime`.

    `fold=True` folds effnet's BatchNorms first (what `effnet export` does); a torchvision / timm model is
    exported as is, since onnxruntime and OpenVINO fold Conv+BN themselves when they load the graph.
    """

    def build(x: torch.Tensor, threads: int) -> tuple[Runner, str]:
        path = _export(factory(), x, fold)
        label = "onnxruntime" if runtime == "onnxruntime" else "openvino f32"
        return _numpy_runner(predictor(path, runtime, threads)), label

    return build


def optimized_runner(model: nn.Module, trial_rounds: int = 10) -> Build:
    """The fastest of: BN folded + channels_last eager, BN folded + onnxruntime, BN folded + OpenVINO f32.

    The installed options are timed on the benchmark's own input and thread count, interleaved round by round
    (so a burst of load from other processes does not decide the choice), and the fastest median is kept: the
    choice adapts to the machine instead of being hard-coded.
    """

    def build(x: torch.Tensor, threads: int) -> tuple[Runner, str]:
        folded = fold_batchnorm(model).to(memory_format=torch.channels_last)
        options: dict[str, Runner] = {
            "folded+channels_last": lambda batch: folded(batch.contiguous(memory_format=torch.channels_last))
        }
        runtimes = [runtime for runtime in ("onnxruntime", "openvino") if runtime_available(runtime)]
        if runtimes:
            path = _export(model, x, fold=True)
            for runtime in runtimes:
                options[f"folded+{runtime}"] = _numpy_runner(predictor(path, runtime, threads))
        times: dict[str, list[float]] = {name: time_runner(run, x, 1, 0) for name, run in options.items()}
        for _ in range(trial_rounds):
            for name, run in options.items():
                times[name] += time_runner(run, x, 0, 1)
        best = min(times, key=lambda name: statistics.median(times[name]))
        return options[best], best

    return build


def int8_runner(model: nn.Module, calibration: str | Path | None = None, backend: str = "auto") -> Build:
    """effnet's int8 export (`effnet.deploy.quantize`), calibrated on photos from `calibration` or, without it, on
    random inputs: enough to time it, not to judge its accuracy (`effnet export --int8` does that)."""

    def build(x: torch.Tensor, threads: int) -> tuple[Runner, str]:
        folder = Path(tempfile.mkdtemp(prefix="effnet-bench-int8-"))
        # Random inputs only time the file: skip the slow full bias correction, which changes values, not speed.
        config = resolve_backend(QuantizeConfig(backend=backend, full_bias_correction=calibration is not None))
        if calibration is not None:
            images, _ = calibration_arrays(model, calibration, config.calibration_size, x.shape[-1])
        else:
            generator = torch.Generator().manual_seed(0)
            images = torch.randn(32, 3, x.shape[-1], x.shape[-1], generator=generator).numpy()
        path = quantize_model(model, images, folder / "model.int8.onnx", config)
        return _numpy_runner(predictor(path, config.backend, threads)), f"int8 {config.backend}"

    return build
