"""Record int8 exports of the real EfficientNet-Lite0/1/2 weights, judged on real photos, in BENCHMARKS.md.

    python benchmarks/int8.py                         # all models, update BENCHMARKS.md
    python benchmarks/int8.py --models efficientnet_lite0 --dry-run

    python benchmarks/int8.py --holdout /work/data/imagenet_sample --holdout-size 1000   # judged by top-1

Calibrates on cats_vs_dogs/train and judges on cats_vs_dogs/val (400 photos calibration never saw), or on
--holdout: top-1 agreement with fp32 over the 1000 ImageNet classes and, when the held-out photos are named by
ImageNet wnid (`n01440764_tench.JPEG` or wnid folders: see benchmarks/imagenet_sample.py), the top-1 accuracy of
fp32 and int8; and batch-1 one-thread latency of the int8 export against the same model's fp32 ONNX on
onnxruntime, timed interleaved in one process. Then a Lite0 whose classifier is fine-tuned on the cats-vs-dogs
train photos (backbone frozen) is exported the same way and both are scored on val: accuracy must survive int8.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from effnet._util.cpuinfo import cpu_info
from effnet._util.fileio import write_section
from effnet.deploy.quantize import ROUNDINGS, QuantizeConfig, export_int8, load_arrays, resolve_backend, shuffled_images
from effnet.deploy.runtimes import predictor, runtime_versions

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("EFFNET_CATS_VS_DOGS", ROOT.parent / "shared" / "data" / "cats_vs_dogs"))
MARKER = "<!-- section: int8-export -->"


def load_lite(name: str) -> torch.nn.Module:
    """Lite weights from their registry record (TF port: SAME padding, BN eps 1e-3, [-1, 1] inputs, bicubic)."""
    import effnet

    return effnet.create_model(name, pretrained=True).eval()


@torch.no_grad()
def _features(model: torch.nn.Module, images: np.ndarray) -> torch.Tensor:
    batches = [torch.from_numpy(images[i : i + 50]) for i in range(0, len(images), 50)]
    return torch.cat([model.forward_head(model.forward_features(b), pre_logits=True) for b in batches])


def fine_tune_head(model: torch.nn.Module, folder: Path, steps: int = 300) -> tuple[torch.nn.Module, list[str]]:
    """A copy of `model` with a classifier for the class subfolders of `folder`, trained on frozen features."""
    import copy

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    paths = shuffled_images(folder)
    labels = torch.tensor([classes.index(p.parent.name) for p in paths])
    features = _features(model, load_arrays(model, paths))
    tuned = copy.deepcopy(model)
    tuned.reset_classifier(len(classes))
    head = tuned.classifier
    optimizer = torch.optim.LBFGS(head.parameters(), lr=0.5, max_iter=steps)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(features), labels) + 1e-3 * head.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return tuned.eval(), classes


def _recipe(report) -> str:
    rounding = "output-aware weight rounding" if report.rounding == "optimized" else "nearest rounding"
    if report.backend == "openvino":
        floats = f", {report.in_float} in float" if report.float_ops else ""
        return f"{rounding} + NNCF → OpenVINO, full bias correction{floats}"
    return f"onnxruntime QDQ, per-channel, {report.method}"


def disagreement_margins(model: torch.nn.Module, report, images: np.ndarray) -> list[float]:
    """fp32 top-1 minus top-2 probability of each held-out photo whose int8 top-1 differs: close calls or not."""
    int8 = predictor(report.path, report.backend, threads=1)
    with torch.no_grad():
        probs = torch.cat([model(torch.from_numpy(images[i : i + 50])) for i in range(0, len(images), 50)])
    probs = probs.softmax(1).numpy()
    top2 = np.sort(probs, 1)[:, -2:]
    flipped = [i for i, x in enumerate(images) if int(int8(x[None]).argmax()) != int(probs[i].argmax())]
    return sorted(float(top2[i, 1] - top2[i, 0]) for i in flipped)


def _row(name: str, report, margins: list[float]) -> str:
    shown = ", ".join(f"{m:.3f}" for m in margins[:12]) + (f" (+{len(margins) - 12} more)" if len(margins) > 12 else "")
    top1 = "–"
    if report.top1_change is not None:
        top1 = f"{report.fp32_top1:.1%} → {report.int8_top1:.1%} ({report.top1_change:+.1f})"
    return (
        f"| {name} | {_recipe(report)} | {report.calibration_images} | "
        f"{report.agreement:.1%} ({round(report.agreement * report.holdout_images)}/{report.holdout_images}) | "
        f"{top1} | {shown} | {report.fp32_latency_ms:.1f} | {report.int8_latency_ms:.1f} | {report.speed_ratio:.2f}x |"
    )


def run(models: list[str], config: QuantizeConfig, folder: Path, holdout: Path, tuned: bool = True) -> list[str]:
    """Export every model (judged on `holdout`) and the fine-tuned Lite0 (on val); the markdown lines."""
    lines = [
        "| model | int8 recipe | calibration photos | top-1 = fp32 (held out) | top-1 fp32 → int8 (points) | fp32 "
        "top-1 − top-2 probability of each photo that changed class | fp32 ORT ms | int8 ms | int8 / fp32 |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    held_paths = shuffled_images(holdout)[: config.holdout_size]
    for name in models:
        model = load_lite(name)
        report = export_int8(model, folder / f"{name}.int8.onnx", DATA / "train", holdout, config, force=True)
        lines.append(_row(name, report, disagreement_margins(model, report, load_arrays(model, held_paths))))
        print(lines[-1], flush=True)
    if not tuned:
        return lines
    val_paths = shuffled_images(DATA / "val")[: config.holdout_size]
    base = load_lite("efficientnet_lite0")
    tuned, classes = fine_tune_head(base, DATA / "train")
    tuned.class_names = tuple(classes)  # its own classes: export_int8 scores the val photos by their folders
    tuned_config = replace(config, min_agreement=0.0)
    report = export_int8(tuned, folder / "tuned.int8.onnx", DATA / "train", DATA / "val", tuned_config, force=True)
    margins = disagreement_margins(tuned, report, load_arrays(tuned, val_paths))
    lines.append(_row("efficientnet_lite0 fine-tuned (cats vs dogs head)", report, margins))
    assert report.fp32_top1 is not None and report.int8_top1 is not None
    lines += [
        "",
        f"Fine-tuned Lite0 (classifier trained on the {len(shuffled_images(DATA / 'train'))} train photos, backbone "
        f"frozen), val accuracy on {report.holdout_images} photos: fp32 {report.fp32_top1:.2%}, int8 "
        f"{report.int8_top1:.2%} ({report.top1_change:+.2f} points).",
    ]
    print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    """Export, print and record."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=[f"efficientnet_lite{i}" for i in range(3)])
    parser.add_argument("--backend", choices=("auto", "onnxruntime", "openvino"), default=QuantizeConfig().backend)
    parser.add_argument("--rounding", choices=ROUNDINGS, default=QuantizeConfig().rounding, help="weight rounding")
    parser.add_argument("--runs", type=int, default=100, help="interleaved timing rounds per model")
    parser.add_argument("--holdout", type=Path, default=DATA / "val", help="photos to judge the Lite models on")
    parser.add_argument("--holdout-size", type=int, default=400, help="held-out photos used (default 400)")
    parser.add_argument("--no-finetuned", action="store_true", help="skip the fine-tuned cats-vs-dogs Lite0")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--dry-run", action="store_true", help="print only, do not touch BENCHMARKS.md")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"real photos not found at {DATA}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    config = resolve_backend(
        QuantizeConfig(
            backend=args.backend, rounding=args.rounding, holdout_size=args.holdout_size, timing_runs=args.runs
        )
    )
    with tempfile.TemporaryDirectory(prefix="effnet-int8-bench-") as tmp:
        lines = run(args.models, config, Path(tmp), args.holdout, not args.no_finetuned)
    command = "python benchmarks/int8.py " + " ".join(argv if argv is not None else sys.argv[1:])
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = [
        "## int8 export",
        "",
        f"`{command.strip()}` — {stamp}; CPU: {cpu_info().summary()}; {runtime_versions()}; 1-minute load "
        f"average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after (the machine is shared with other "
        "jobs: latencies are medians of interleaved runs, read the ratios).",
        f"Calibrated on {config.calibration_size} cats_vs_dogs/train photos, judged on "
        f"{config.holdout_size} photos of {_shown_path(args.holdout)} (the fine-tuned model on cats_vs_dogs/val); "
        "batch 1, one thread.",
        "",
    ]
    body = "\n".join(header + lines)
    print(body)
    if not args.dry_run:
        write_section(args.out, MARKER, body)
    return 0


def _shown_path(path: Path) -> str:
    return str(path.relative_to(DATA.parent.parent)) if path.is_relative_to(DATA.parent.parent) else str(path)


if __name__ == "__main__":
    raise SystemExit(main())
