"""int8 recipe variants on one Lite model, judged by top-1 on labelled ImageNet photos calibration never saw.

    python benchmarks/int8_recipes.py --model efficientnet_lite2 --imagenet /work/data/imagenet_sample \
        --variants default fast-bias-correction calibration-800
    python benchmarks/int8_recipes.py --model efficientnet_lite2 --imagenet DIR --split 300 --variants default

Calibration photos: cats_vs_dogs/train (seeded order, as `effnet export --int8`), or with --split N the first N of
the ImageNet photos in a seeded order, the other ones scored. The fp32 reference is the BN-folded model's ONNX graph
on onnxruntime; each variant's int8 file runs on its backend; one thread. Prints one line per variant (agreement
with fp32, fp32 and int8 top-1, photos gained / lost, mean KL(fp32 || int8)) and appends it as JSON to --log.
Used to choose the default recipe (docs/deploy.md); the table is in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from effnet.deploy.export import fold_batchnorm
from effnet.deploy.int8_quantizers import quantize_graph
from effnet.deploy.int8_rounding import round_weights
from effnet.deploy.quantize import QuantizeConfig, _export_fp32, load_arrays, resolve_backend, shuffled_images
from effnet.deploy.runtimes import predictor
from effnet.weights.pretrained import imagenet_label

ROOT = Path(__file__).resolve().parent.parent
CATS = Path(os.environ.get("EFFNET_CATS_VS_DOGS", ROOT.parent / "shared" / "data" / "cats_vs_dogs")) / "train"
BASE = QuantizeConfig()  # the default recipe, resolved below
VARIANTS: dict[str, dict] = {  # name: QuantizeConfig fields changed from the default
    "default": {},
    "fast-bias-correction": {"full_bias_correction": False},
    "nearest-rounding": {"rounding": "nearest"},
    "calibration-100": {"calibration_size": 100},
    "calibration-800": {"calibration_size": 800},
    "rounding-800": {"calibration_size": 800, "rounding_size": 800},
    "float-depthwise-only": {"float_ops": ("depthwise",)},
    "float-depthwise-add": {"float_ops": ("depthwise", "add")},
    "everything-int8": {"float_ops": ("none",)},
    "stem-float": {"keep_float": ("/stem/",)},
    "head-float": {"keep_float": ("/head/",)},
    "stem-head-float": {"keep_float": ("/stem/", "/head/")},
    "overflow-fix": {"overflow_fix": True},
    "onnxruntime-minmax": {"backend": "onnxruntime", "rounding": "nearest", "float_ops": ("none",)},
    "onnxruntime-minmax-per-tensor": {
        "backend": "onnxruntime",
        "rounding": "nearest",
        "float_ops": ("none",),
        "per_channel": False,
    },
    "onnxruntime-optimized-float": {"backend": "onnxruntime", "rounding": "optimized", "float_ops": ("depthwise",)},
}


_ROUNDED: dict[tuple, Path] = {}


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(1, keepdims=True))
    return shifted / shifted.sum(1, keepdims=True)


def _logits(path: Path, backend: str, images: np.ndarray) -> np.ndarray:
    run = predictor(path, backend, threads=1)
    return np.concatenate([np.asarray(run(image[None].astype(np.float32))) for image in images])


def photos(model: torch.nn.Module, imagenet: Path, split: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Calibration images (as many as the largest variant wants), scored images and their labels."""
    scored = shuffled_images(imagenet)
    calibration = shuffled_images(CATS)
    if split:
        calibration, scored = scored[:split], scored[split:]
    labels = np.array([imagenet_label(path) for path in scored])
    assert not set(calibration) & set(scored) and all(label is not None for label in labels)
    return load_arrays(model, calibration), load_arrays(model, scored).astype(np.float16), labels


def measure(name: str, model: torch.nn.Module, data: tuple, folder: Path, reference: tuple) -> dict:
    """One variant: quantize the folded model, score it against the fp32 graph's logits."""
    cal_images, scored, labels = data
    fp32_graph, fp32_logits = reference
    config = resolve_backend(replace(BASE, **VARIANTS[name]))
    images = cal_images[: config.calibration_size]
    start = time.perf_counter()
    source = fp32_graph
    if config.rounding == "optimized":  # the same photos and float ops round the same: once per process
        key = (min(config.rounding_size, len(images)), config.float_ops)
        if key not in _ROUNDED:
            rounded = round_weights(model, images[: key[0]], float_ops=config.float_ops)
            _ROUNDED[key] = _export_fp32(rounded, folder / name, images.shape[-1])
        source = _ROUNDED[key]
    int8_path = quantize_graph(source, images, folder / f"{name}.int8.onnx", config)
    seconds = time.perf_counter() - start
    int8_logits = _logits(int8_path, config.backend, scored)
    fp32_top, int8_top = fp32_logits.argmax(1), int8_logits.argmax(1)
    p, q = _softmax(fp32_logits), _softmax(int8_logits)
    kl = float(np.mean(np.sum(p * (np.log(p + 1e-12) - np.log(q + 1e-12)), 1)))
    return {
        "variant": name,
        "calibration": len(images),
        "scored": len(labels),
        "agreement": float(np.mean(fp32_top == int8_top)),
        "fp32_top1": float(np.mean(fp32_top == labels)),
        "int8_top1": float(np.mean(int8_top == labels)),
        "gained": int(np.sum((int8_top == labels) & (fp32_top != labels))),
        "lost": int(np.sum((int8_top != labels) & (fp32_top == labels))),
        "kl": kl,
        "quantize_s": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure every asked variant, one at a time."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="efficientnet_lite2")
    parser.add_argument("--imagenet", type=Path, required=True, help="labelled ImageNet photos (wnid file names)")
    parser.add_argument("--split", type=int, default=0, help="calibrate on N of the ImageNet photos, score the rest")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["default"])
    parser.add_argument("--log", type=Path, default=Path("int8_recipes.jsonl"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    import effnet

    model = effnet.create_model(args.model, pretrained=True).eval()
    data = photos(model, args.imagenet, args.split)
    folded = fold_batchnorm(model)
    with tempfile.TemporaryDirectory(prefix="effnet-int8-recipes-") as tmp:
        fp32_graph = _export_fp32(folded, Path(tmp), data[0].shape[-1])
        reference = (fp32_graph, _logits(fp32_graph, "onnxruntime", data[1]))
        for name in args.variants:
            row = measure(name, folded, data, Path(tmp), reference)
            row |= {"model": args.model, "split": args.split, "load": round(os.getloadavg()[0], 1)}
            change = (row["int8_top1"] - row["fp32_top1"]) * 100
            print(
                f"{args.model} {name}: agreement {row['agreement']:.1%}, top-1 {row['fp32_top1']:.1%} -> "
                f"{row['int8_top1']:.1%} ({change:+.1f}; +{row['gained']} -{row['lost']}), KL {row['kl']:.2e}, "
                f"calibration {row['calibration']}, scored {row['scored']}, {row['quantize_s']} s",
                flush=True,
            )
            with args.log.open("a") as log:
                log.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
