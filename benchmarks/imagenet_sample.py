"""Top-1 / top-5 of the offline pretrained weights on 1,000 labelled ImageNet photos, one eval preprocessing per row.

    python benchmarks/imagenet_sample.py --data /work/data/imagenet_sample            # Lite0/1/2, print only
    python benchmarks/imagenet_sample.py --data DIR --models efficientnet_lite0 --limit 200
    python benchmarks/imagenet_sample.py --data DIR --record                          # also BENCHMARKS.md

The photos: github.com/EliSchwartz/imagenet-sample-images, "one random image per class" of ImageNet-1k, named
`<wnid>_<class name>.JPEG` (the label is the WordNet id; class index = its place among the 1000 sorted wnids,
`effnet.weights.pretrained.imagenet_wnids`). That repository states no license; the photos are ImageNet's, under
ImageNet's research-only terms, so they stay out of this repository: pass their folder with --data. They may come
from ImageNet's TRAIN split, which the weights were trained on, so the absolute top-1 here is inflated against the
reported val top-1: read the differences between preprocessings of the same weights, not the level.

Rows, for the same weights in the same effnet model (only the preprocessing changes):
- squash: the whole photo resized to size x size (antialiased PIL bicubic), [-1, 1] (effnet's record until 2026-12)
- crop +32: shorter side to size + 32, centre crop (TF's eval geometry until 2021, timm's crop_pct); [-1, 1] or the
  TF Lite builder's (x - 127) / 128
- crop +size/7: tensorflow/tpu's CROP_PADDING = round(size / 7) since 2021 (same as +32 at 224)
- timm: timm's own `create_transform(resolve_data_config(...))` of the matching `tf_efficientnet_liteN` config,
  compared with the crop +32, [-1, 1] row on 50 photos (a row of its own when its tensors differ), and timm's own
  model holding the same weights (renamed with effnet's layout map) against effnet's logits
- tf: TF's eval itself, the window int(size / (size + pad) * shorter side) cropped from the photo, then the legacy
  `resize_bicubic` (no antialias, half_pixel_centers=False), (x - 127) / 128
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

import effnet
from effnet._util.cpuinfo import cpu_info
from effnet._util.fileio import write_section
from effnet.deploy.predict import collect_images, load_image
from effnet.preprocess import LITE_MEAN, LITE_STD, Preprocess, tf_crop_pct, tpu_crop_pct
from effnet.weights.pretrained import get_pretrained, imagenet_classes, imagenet_label

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- section: imagenet-sample -->"
MODELS = [f"efficientnet_lite{i}" for i in range(3)]
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Row:
    """One way to feed the weights: a name and a PIL -> tensor transform."""

    name: str
    transform: Callable
    preprocess: Preprocess | None = None  # None: not an effnet Preprocess (timm's transform)


def labelled_photos(folder: str | Path | None, limit: int | None = None) -> list[tuple[Path, int]]:
    """(photo, ImageNet-1k class index) for every photo under `folder` whose name or folder is a class's wnid."""
    if folder is None:
        raise ValueError(
            "pass --data DIR: a folder of ImageNet photos named by WordNet id (n01440764_tench.JPEG, or wnid "
            "class folders), e.g. a clone of github.com/EliSchwartz/imagenet-sample-images"
        )
    if not Path(folder).is_dir():
        raise ValueError(f"--data {folder} is not a folder")
    photos = [(path, imagenet_label(path)) for path in collect_images([folder])]
    labelled = [(path, label) for path, label in photos if label is not None]
    if not labelled:
        raise ValueError(f"no photo under {folder} is named by an ImageNet wnid (n01440764_x.JPEG or n01440764/x)")
    return labelled[:limit]


def rows_for(name: str, with_tf: bool) -> list[Row]:
    """The preprocessings compared for one model, at its record's input size (rules equal at a size: once)."""
    size = get_pretrained(name).preprocess.input_size
    squash = Preprocess(size, 1.0, "bicubic", HALF, HALF, resize_mode="squash")
    crop32 = Preprocess(size, tf_crop_pct(size), "bicubic", HALF, HALF)
    crop32_lite = replace(crop32, mean=LITE_MEAN, std=LITE_STD)
    crop7_lite = replace(crop32_lite, crop_pct=tpu_crop_pct(size))
    rows = [
        Row("squash, [-1, 1]", squash.transforms(), squash),
        Row("crop +32, [-1, 1]", crop32.transforms(), crop32),
        Row("crop +32, (x-127)/128", crop32_lite.transforms(), crop32_lite),
    ]
    if crop7_lite != crop32_lite:
        rows.append(Row(f"crop +{round(size / 7)} (size/7), (x-127)/128", crop7_lite.transforms(), crop7_lite))
    if with_tf:
        for crop in dict.fromkeys([crop32_lite, crop7_lite]):
            tf = replace(crop, resize_mode="tf")
            rows.append(Row(f"tf: window +{tf.resize_size - size}, legacy bicubic, (x-127)/128", tf.transforms(), tf))
    return rows


def timm_check(model: torch.nn.Module, name: str, paths: Sequence[Path]) -> tuple[Row | None, str]:
    """timm's transform and model for the same weights against effnet's crop +32 row on a few photos.

    Returns a full row to measure when timm's tensors differ from that row's, else None, and a line saying so.
    """
    size = get_pretrained(name).preprocess.input_size
    ours = Preprocess(size, tf_crop_pct(size), "bicubic", HALF, HALF).transforms()
    theirs = _timm_transform(name)
    x_ours = torch.stack([ours(load_image(path)) for path in paths])
    x_theirs = torch.stack([theirs(load_image(path)) for path in paths])
    with torch.inference_mode():
        logits = (model(x_theirs) - timm_twin(model, name)(x_theirs)).abs().max()
    pixels = float((x_ours - x_theirs).abs().max())
    line = (
        f"{name}: timm's transform for {_timm_name(name)} vs effnet's crop +32, [-1, 1] on {len(paths)} photos: "
        f"max |Δ| {pixels:.2g}; timm's own model with these weights vs effnet's, same inputs: max |Δ logit| "
        f"{float(logits):.2g}"
    )
    return (Row("timm transform", theirs) if pixels > 1e-6 else None), line


def _timm_name(name: str) -> str:
    return "tf_" + name  # the TF Lite ports: tf_efficientnet_lite0..4


def _timm_transform(name: str) -> Callable:
    import timm

    reference = timm.create_model(_timm_name(name), pretrained=False)
    return timm.data.create_transform(**timm.data.resolve_data_config({}, model=reference))


def timm_twin(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """timm's own model holding `model`'s weights, renamed with effnet's layout map (a check on both)."""
    import timm

    from effnet.weights.layouts import rename_to_effnet

    twin = timm.create_model(_timm_name(name), pretrained=False).eval()
    state = model.state_dict()
    twin.load_state_dict({theirs: state[ours] for ours, theirs in rename_to_effnet(model, "timm").items()})
    return twin


@torch.inference_mode()
def logits_of(model: torch.nn.Module, transform: Callable, paths: Sequence[Path], batch: int = 10) -> torch.Tensor:
    """(N, classes) logits of the photos through `transform`, forwarded `batch` at a time (small batches: large
    ones spent more time in the kernel, allocating, than in the convolutions here)."""
    out = []
    for start in range(0, len(paths), batch):
        x = torch.stack([transform(load_image(path)) for path in paths[start : start + batch]])
        out.append(model(x).float())
    return torch.cat(out)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of rows whose label is among the k highest logits."""
    return float((logits.topk(k, 1).indices == labels[:, None]).any(1).float().mean())


def measure(
    name: str, photos: list[tuple[Path, int]], with_tf: bool, show: int, only: Sequence[str] = ()
) -> list[dict]:
    """Top-1 / top-5 of one model under every row; prints each row as it finishes."""
    model = effnet.create_model(name, pretrained=True).eval()
    record = get_pretrained(name)
    paths = [path for path, _ in photos]
    labels = torch.tensor([label for _, label in photos])
    timm_row, line = timm_check(model, name, paths[:50])
    print(line, flush=True)
    results = []
    rows = rows_for(name, with_tf) + ([timm_row] if timm_row else [])
    for row in [row for row in rows if not only or any(row.name.startswith(prefix) for prefix in only)]:
        start = time.perf_counter()
        logits = logits_of(model, row.transform, paths)
        top1, top5 = topk_accuracy(logits, labels, 1), topk_accuracy(logits, labels, 5)
        default = row.preprocess == record.preprocess
        results.append({"model": name, "row": row.name, "top1": top1, "top5": top5, "default": default, "note": line})
        took = time.perf_counter() - start
        print(f"{name:18s} {row.name:48s} top-1 {top1:.1%} top-5 {top5:.1%}  ({took:.0f} s)", flush=True)
        if show:
            _show(logits[:show], paths[:show])
    return results


def _show(logits: torch.Tensor, paths: Sequence[Path]) -> None:
    """Predicted class beside each photo's file name: the label order checked by eye."""
    names = imagenet_classes()
    for path, index in zip(paths, logits.argmax(1).tolist(), strict=True):
        print(f"    {path.name:40s} -> {index:4d} {names[index]}")


def table(results: list[dict], reported: dict[str, float | None]) -> list[str]:
    """Markdown rows: each preprocessing's top-1 / top-5, and its top-1 and error ratio against the squash row."""
    lines = [
        "| model (reported val top-1) | preprocessing | top-1 | top-5 | top-1 − squash | errors / squash's |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for result in results:
        base = next(r for r in results if r["model"] == result["model"] and r["row"].startswith("squash"))
        mark = " **(default)**" if result["default"] else ""
        ratio = (1 - result["top1"]) / max(1e-9, 1 - base["top1"])
        lines.append(
            f"| {result['model']} ({reported[result['model']]}) | {result['row']}{mark} | {result['top1']:.1%} | "
            f"{result['top5']:.1%} | {(result['top1'] - base['top1']) * 100:+.1f} | {ratio:.2f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Measure, print and (with --record) write BENCHMARKS.md's section."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="ImageNet photos named by wnid (no default: see the docstring)")
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--limit", type=int, help="first N labelled photos only")
    parser.add_argument("--no-tf", action="store_true", help="skip the TF-exact rows")
    parser.add_argument("--rows", nargs="+", default=(), help="only the rows whose names start so, e.g. 'crop +32'")
    parser.add_argument("--show", type=int, default=0, help="print the top class of the first N photos per row")
    parser.add_argument("--record", action="store_true", help="write the table into BENCHMARKS.md")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    try:
        photos = labelled_photos(args.data, args.limit)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    results = [row for name in args.models for row in measure(name, photos, not args.no_tf, args.show, args.rows)]
    reported = {name: get_pretrained(name).top1 for name in args.models}
    command = "python benchmarks/imagenet_sample.py " + " ".join(argv if argv is not None else sys.argv[1:])
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = [
        "## Pretrained top-1 on 1,000 labelled ImageNet photos, per eval preprocessing",
        "",
        f"`{command.strip()}` — {stamp}; {len(photos)} photos (github.com/EliSchwartz/imagenet-sample-images, one "
        "per class, possibly from ImageNet's train split: read the differences, not the level); CPU: "
        f"{cpu_info().summary()}; 1-minute load {load_before:.1f} before, {os.getloadavg()[0]:.1f} after.",
        "",
    ]
    notes = ["", *dict.fromkeys(f"- {result['note']}" for result in results)]
    body = "\n".join(header + table(results, reported) + notes)
    print(body)
    if args.record:
        write_section(args.out, MARKER, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
