"""`effnet cam`: class activation maps (CAM / Grad-CAM) of one or more models as PNG overlays and a grid."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from effnet._util.validation import probability, whole_number
from effnet.commands._flags import add_model_flags, add_output_flags

NAME = "cam"
HELP = "class activation maps (CAM / Grad-CAM) as PNG overlays and a grid"

_CLASS_INDEX = whole_number(0, 10_000_000)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `cam`."""
    cam = subparsers.add_parser(NAME, help=HELP)
    cam.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    add_model_flags(cam, multiple=True)
    cam.add_argument("--method", nargs="+", choices=("cam", "gradcam"), default=["cam"], help="one or both")
    cam.add_argument("--layer", default="head", help='Grad-CAM layer: "head" or "stageN" (default head)')
    cam.add_argument("--class-index", type=_CLASS_INDEX, nargs="+", help="classes to explain (default: each top-1)")
    cam.add_argument("--out", type=Path, default=Path("cam"), help="output folder (default ./cam)")
    cam.add_argument("--alpha", type=probability, default=0.5, help="heatmap opacity (default 0.5)")
    add_output_flags(cam, "print the overlays written, as JSON")
    cam.set_defaults(func=run)


def _models(args: argparse.Namespace) -> dict[str, Any]:
    """{label: model} for every --model / --weights pair (PyTorch models: CAM reads their feature maps)."""
    from effnet.commands._source import load_from_flags
    from effnet.deploy.runtimes import is_exported

    names = args.model or [None] * max(1, len(args.weights or []))
    weights = args.weights or [None] * len(names)
    if len(weights) != len(names):
        raise ValueError(f"--weights needs one file per --model ({len(names)}), got {len(weights)}")
    exported = [str(w) for w in weights if is_exported(w)]
    if exported:
        raise ValueError(
            f"CAM needs the PyTorch model's feature maps and classifier weights, which an exported graph "
            f"({exported[0]}) lacks: pass the .safetensors or checkpoint it was exported from"
        )
    models = {}
    for name, w in zip(names, weights, strict=True):
        model = load_from_flags(args, name, w, need_weights=True)
        models[name or (Path(w).stem if w else model.spec.name)] = model
    return models


def run(args: argparse.Namespace) -> int:
    """Write an overlay per (input, model, method, class) and a grid of them all."""
    from PIL import Image

    from effnet.analysis.cam import image_panels, save_grid
    from effnet.commands._source import class_names
    from effnet.deploy.predict import collect_images, load_image

    models = _models(args)
    paths = collect_images(args.inputs)
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} exists and is not a folder; give a folder for the overlays")
    args.out.mkdir(parents=True, exist_ok=True)
    rows, row_labels, written, used, labels = [], [], [], set(), {}
    for path in paths:
        try:
            image = load_image(path)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            print(f"{path}: cannot read: {err}", file=sys.stderr)
            continue
        labels = labels or {name: class_names(args, model) for name, model in models.items()}
        panels = image_panels(models, image, args.method, args.class_index or [None], args.layer, args.alpha)
        rows.append([_write_panel(args, path, panel, labels[panel.model], used, written) for panel in panels])
        row_labels.append(Path(path).name)
    if not rows:
        raise ValueError("none of the inputs could be read as an image")
    grid = save_grid(rows, args.out / "grid.png", row_labels)
    if args.json:
        from effnet._util.console import print_json

        print_json({"overlays": written, "grid": grid})
    else:
        print(f"wrote {len(written)} overlays and {grid}")
    return 0


def _write_panel(
    args: argparse.Namespace, path: str, panel: Any, names: list[str] | None, used: set[Path], written: list
) -> tuple[Any, str]:
    """Save one overlay (and say so), recording it in `written`; its grid cell (picture, caption)."""
    from effnet._util.fileio import atomic_write

    result, name, tag = panel.result, panel.model, panel.method
    label = names[result.class_index] if names else str(result.class_index)
    out = _unique(args.out / f"{Path(path).stem}_{Path(name).stem}_{tag}_{result.class_index}.png", used)
    atomic_write(out, lambda tmp: panel.picture.save(tmp, format="PNG"))
    written.append(
        {
            "file": out,
            "input": path,
            "model": name,
            "method": tag,
            "class_index": result.class_index,
            "label": label,
            "probability": result.probability,
        }
    )
    if not args.json:
        print(f"{out}  {name} {tag}: class {result.class_index} {label} (p={result.probability:.3f})")
    return panel.picture, f"{name} {tag}\n{result.class_index} {label} p={result.probability:.2f}"


def _unique(path: Path, used: set[Path]) -> Path:
    """`path`, or path-2, path-3, ... when an earlier input of this run (same file name elsewhere) took it."""
    candidate, number = path, 2
    while candidate in used:
        candidate, number = path.with_name(f"{path.stem}-{number}{path.suffix}"), number + 1
    used.add(candidate)
    return candidate
