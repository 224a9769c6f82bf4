"""Training speed end to end on real JPEGs: effnet's defaults beside its step ceiling, older flags and timm's loader.

One command, one run, side by side. It generates (once; cached under --data-dir) a folder of real JPEGs at
ImageNet's size distribution: photos from --source re-encoded with the shorter side drawn from 300-500 px, N
classes x M files, so decoding and disk are real. Each candidate runs in a fresh process (clean peak memory, its
own thread settings) and reports:

- end-to-end img/s: effnet's own training loop (`build_run` + the loop's step and loader, as `effnet train` runs
  them) over --steps steps after --warmup ones;
- ceiling img/s: the same step on one batch already on the device (no input pipeline);
- busy %: the device's share of the wall time, ceiling step time x steps / end-to-end wall (CUDA; n/a on CPU);
- peak memory: torch.cuda.max_memory_allocated (CUDA) or the process's peak RSS (CPU);
- CPU cores used: CPU time of the process and its loader workers / wall, over the timed steps.

Candidates: `effnet defaults` (every runtime option `auto`), the flags one passed before they existed
(`before` = fp32, contiguous, torch's threads, no workers; the best explicit flags on CPU), and `timm loader`:
timm.data.create_loader with its prefetcher (normalization on the device) and timm's RandAugment at the same
magnitude, feeding the same model and step. NVIDIA's A100 figure is printed as a reference line.

    python benchmarks/train_speed.py --small --out speed.md          # CPU: 200 files, B0 at 96 px, a few steps
    python benchmarks/train_speed.py --device cuda --data-dir /data/speed --out speed.md   # 10k files, B0/B4/V2-S
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The project's real photos: ../shared/data beside the checkout (or the shared folder of this workplace).
SOURCES = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "cats_vs_dogs",
    Path("/work/shared/data/cats_vs_dogs"),
)
SOURCE = next((path for path in SOURCES if path.is_dir()), SOURCES[0])
# NVIDIA DeepLearningExamples, EfficientNet for PyTorch, "Training performance: NVIDIA A100 (1x A100 80GB)".
NVIDIA_A100 = {"efficientnet_b0": (2489, "AMP"), "efficientnet_b4": (331, "AMP")}
# name:size[:batch] (B4 at 380 px in batches of 128, as NVIDIA's A100 figure; the others 256)
GPU_MODELS = ("efficientnet_b0:224:256", "efficientnet_b4:380:128", "efficientnetv2_s:300:256")
SMALL_MODELS = ("efficientnet_b0:96",)
# Explicit runtime flags per candidate (TrainConfig values); `defaults` leaves every option on `auto`.
BEFORE = {
    "amp": None,
    "channels_last": False,
    "threads": None,
    "num_workers": 0,
    "compile": False,
    "tf32": False,
    "input_pipeline": "cpu",
}
CANDIDATES = {
    "effnet defaults (auto)": {},
    "effnet defaults, --input-pipeline cpu": {"input_pipeline": "cpu"},
    "effnet defaults, --input-pipeline gpu": {"input_pipeline": "gpu"},
    "effnet defaults, --compile on": {"compile": True},  # compiled during the warm-up steps (not timed)
    "before: fp32, contiguous, torch threads, 0 workers": BEFORE,
    "best flags: --channels-last --threads 1": {**BEFORE, "channels_last": True, "threads": 1},
    "best flags: --channels-last --threads 2": {**BEFORE, "channels_last": True, "threads": 2},
    # timm's loader hands normalized float batches over: effnet's step then only copies them (CPU pipeline).
    "timm loader + prefetcher (same model/step)": {"timm": True, "input_pipeline": "cpu"},
}
# On a GPU the flags from before (fp32, no workers) decode 256 JPEGs per step on one core: minutes of device time
# per model, so that row and --compile on (minutes to build) run only when named with --candidates.
GPU_CANDIDATES = (
    "effnet defaults (auto)",
    "effnet defaults, --input-pipeline cpu",
    "timm loader + prefetcher (same model/step)",
)
CPU_CANDIDATES = tuple(name for name in CANDIDATES if not name.endswith(("--input-pipeline cpu", "--compile on")))


# ------------------------------------------------------------------------------------------------ the data
def _reencode(job: tuple[str, str, int, int]) -> None:
    """One file of the folder: a photo at a random ImageNet-like size and JPEG quality (seeded by its index)."""
    from PIL import Image

    photo, out, index, seed = job
    rng = random.Random(seed * 1_000_003 + index)
    with Image.open(photo) as image:
        image = image.convert("RGB")
        short = rng.randint(300, 500)  # ImageNet's photos: shorter side mostly 300-500 px
        scale = short / min(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        image.save(out, quality=rng.randint(75, 95))


def make_jpeg_folder(root: Path, source: Path, classes: int, files: int, seed: int = 0) -> Path:
    """`root`/train/<class>/*.jpg (files in all, spread over classes) and one val file per class, made from the
    photos in `source` re-encoded with the shorter side in 300-500 px (on every core); reused when its manifest
    matches."""
    from multiprocessing import Pool

    manifest = {"source": str(source.resolve()), "classes": classes, "files": files, "seed": seed, "version": 2}
    key = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:12]
    folder = root / f"jpegs-{classes}x{files}-{key}"
    if (folder / "manifest.json").is_file():
        return folder
    photos = sorted(p for p in source.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not photos:
        raise SystemExit(f"train_speed: no photos under {source}; pass --source DIR")
    subs = [f"train/c{i % classes:04d}" for i in range(files)] + [f"val/c{c:04d}" for c in range(classes)]
    jobs = []
    for index, sub in enumerate(subs):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        photo = photos[random.Random(seed * 7_919 + index).randrange(len(photos))]
        jobs.append((str(photo), str(folder / sub / f"{index:06d}.jpg"), index, seed))
    with Pool(min(len(jobs), os.cpu_count() or 1)) as pool:
        pool.map(_reencode, jobs, chunksize=64)
    (folder / "manifest.json").write_text(json.dumps(manifest))  # last: an interrupted run is made again
    return folder


# ---------------------------------------------------------------------------------------- one candidate
def _cpu_seconds() -> float:
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def _peak_memory_mb(device) -> float:
    import resource

    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timm_loader(setup, data_root: Path, batch: int, size: int):
    """timm's training loader with its prefetcher over the same folder and timm's version of effnet's policy
    (AutoAugment policy v0 for B0-B7, RandAugment at the run's magnitude for V2)."""
    from timm.data import ImageDataset, create_loader

    cfg, fast = setup.config, setup.fast
    # timm's "v0" asks Pillow for posterize(bits=0) on ~4% of images, which Pillow now refuses; "v0r" is the same
    # policy with posterize's magnitude reversed (same cost per image).
    auto_augment = {"autoaugment": "v0r", "randaugment": f"rand-m{setup.stages[0].magnitude}-n{cfg.randaugment_ops}"}
    auto_augment = auto_augment.get(str(cfg.augment).removesuffix("_tv"))
    return create_loader(
        ImageDataset(str(data_root / "train")),
        input_size=(3, size, size),
        batch_size=batch,
        is_training=True,
        use_prefetcher=True,
        auto_augment=auto_augment,
        interpolation=setup.preprocess.interpolation,
        mean=setup.preprocess.mean,
        std=setup.preprocess.std,
        num_workers=fast.num_workers,
        pin_memory=fast.pin_memory,
        device=setup.device,
        persistent_workers=fast.persistent_workers,
    )


def run_candidate(name: str, model: str, size: int, args: argparse.Namespace) -> dict:
    """Time one candidate in this process: end to end, then the step alone on a batch on the device."""

    from effnet.data import DataConfig
    from effnet.train import TrainConfig
    from effnet.train.distributed import DistInfo
    from effnet.train.evaluate import resolve_device
    from effnet.train.freezing import apply_train_mode
    from effnet.train.loop import _Trainer  # the loop's own step and loader: what `effnet train` runs
    from effnet.train.setup import build_run

    options = dict(CANDIDATES[name])
    use_timm = options.pop("timm", False)
    device = resolve_device(args.device)
    data = DataConfig(name="folder", root=str(args.folder), verify_images=False)
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            model=model,
            data=data,
            image_size=size,
            batch_size=args.batch,
            epochs=1,
            output_dir=out,
            run_name="bench",
            tensorboard=False,
            plot=False,
            **options,
        )
        setup = build_run(config, None, device, DistInfo(), progress=False)
        trainer = _Trainer(setup)
        trainer._enter_stage()
        trainer.sampler.set_position(0, 0)
        loader = _timm_loader(setup, args.folder, setup.batch_per_rank, size) if use_timm else trainer._epoch_loader()
        apply_train_mode(setup.model)
        batches = iter(loader)
        for _ in range(args.warmup):
            images, targets = next(batches)
            trainer._train_step(images, targets)
        cpu_before, started = _cpu_seconds(), time.perf_counter()
        for _ in range(args.steps):
            images, targets = next(batches)
            trainer._train_step(images, targets)
        wall = time.perf_counter() - started
        cores = (_cpu_seconds() - cpu_before) / wall
        # The ceiling: the last batch, prepared (copied, or decoded and augmented by the GPU pipeline) once.
        images, targets = trainer.to_device(images, targets, (trainer.epoch, trainer.step_in_epoch))
        trainer.to_device = lambda images, targets, *position: (images, targets)
        started = time.perf_counter()
        for _ in range(args.steps):
            trainer._train_step(images, targets)
        ceiling_wall = time.perf_counter() - started
        if setup.lock is not None:
            setup.lock.release()
    fast = setup.fast
    return {
        "candidate": name,
        "model": model,
        "size": size,
        "batch": args.batch,
        "device": device.type,
        "img_per_s": args.batch * args.steps / wall,
        "ceiling_img_per_s": args.batch * args.steps / ceiling_wall,
        "busy_pct": 100 * ceiling_wall / wall if device.type == "cuda" else None,
        "peak_mb": _peak_memory_mb(device),
        "cpu_cores": cores,
        "settings": f"amp {fast.amp or 'fp32'}, cl {'on' if fast.channels_last else 'off'}, "
        f"compile {'on' if fast.compile else 'off'}, {fast.threads} thr, {fast.num_workers} wk",
    }


# ------------------------------------------------------------------------------------------------ driver
def _subprocess(name: str, model: str, size: int, batch: int, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        name,
        "--model-size",
        f"{model}:{size}",
        "--folder",
        str(args.folder),
        "--device",
        args.device,
        "--batch",
        str(batch),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
    ]
    # A new user's environment: no OMP/MKL thread caps, so `torch threads` and `auto` mean what they say.
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    done = subprocess.run(command, capture_output=True, text=True, env={**env, "PYTHONWARNINGS": "ignore"})
    if done.returncode:
        raise SystemExit(f"train_speed: {name} on {model} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _parse_model(text: str, batch: int) -> tuple[str, int, int]:
    """name:size[:batch] -> (name, size, batch); the batch defaults to --batch."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(part.isdigit() for part in parts[1:]):
        raise SystemExit(f"train_speed: --models takes name:size[:batch], got {text!r}")
    return parts[0], int(parts[1]), int(parts[2]) if len(parts) == 3 else batch


def measure(models: list[str], names: list[str], args: argparse.Namespace) -> list[dict]:
    """Every candidate on every model, in --rounds interleaved rounds in rotating order (load hits all alike); the
    median counts."""
    rows = []
    for pair in models:
        model, size, batch = _parse_model(pair, args.batch)
        runs: dict[str, list[dict]] = {name: [] for name in names}
        for round_index in range(args.rounds):
            # Each round starts one candidate later: measured here, the run after a 2-thread candidate on a loaded
            # 2-core box got more CPU than the others, so a fixed order would favour the same candidate every round.
            for name in names[round_index % len(names) :] + names[: round_index % len(names)]:
                runs[name].append(_subprocess(name, model, size, batch, args))
                print(
                    f"round {round_index + 1}: {model} {size}px {name:48s} {runs[name][-1]['img_per_s']:8.1f} img/s",
                    file=sys.stderr,
                )
        for name in names:
            ordered = sorted(runs[name], key=lambda row: row["img_per_s"])
            rows.append({**ordered[len(ordered) // 2], "rounds": [round(r["img_per_s"], 2) for r in runs[name]]})
    return rows


def markdown(rows: list[dict], header: str) -> str:
    """The side-by-side table (one block per model) with NVIDIA's A100 figure as a reference line."""
    lines = [
        header,
        "",
        "| model | candidate | settings | img/s end to end | ceiling img/s | busy % | peak MB "
        "| CPU cores used | x defaults | img/s per round |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        same = [r for r in rows if r["model"] == row["model"]]
        base = next((r for r in same if r["candidate"] == "effnet defaults (auto)"), same[0])
        busy = f"{row['busy_pct']:.0f}" if row["busy_pct"] is not None else "n/a (CPU)"
        lines.append(
            f"| {row['model']} {row['size']}px b{row['batch']} | {row['candidate']} | {row['settings']} "
            f"| {row['img_per_s']:.1f} | {row['ceiling_img_per_s']:.1f} | {busy} | {row['peak_mb']:.0f} "
            f"| {row['cpu_cores']:.2f} | {row['img_per_s'] / base['img_per_s']:.2f}x "
            f"| {' / '.join(f'{rate:.1f}' for rate in row.get('rounds', []))} |"
        )
    for model in dict.fromkeys(row["model"] for row in rows):
        if model in NVIDIA_A100:
            rate, mode = NVIDIA_A100[model]
            lines.append(
                f"| {model} | NVIDIA DeepLearningExamples, 1x A100 80GB, {mode} (reference, not run here) "
                f"| DALI | {rate:,} | | | | | | |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="CPU config: 200 files / 10 classes, B0 at 96 px")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--source", type=Path, default=SOURCE, help="photos to re-encode (any folder tree)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "effnet-train-speed",
        help="where the generated JPEG folder is cached",
    )
    parser.add_argument("--classes", type=int, help="classes (default 1000; --small 10)")
    parser.add_argument("--files", type=int, help="training files (default 10000; --small 200)")
    parser.add_argument(
        "--models", nargs="*", help="name:size[:batch] (default B0:224:256 B4:380:128 V2-S:300:256; --small B0:96)"
    )
    parser.add_argument("--batch", type=int, help="images per step where --models gives none (default 256; --small 16)")
    parser.add_argument("--steps", type=int, help="timed steps (default 50; --small 6)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 20; --small 2)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds, the median counts (default 1; --small 3)")
    parser.add_argument("--candidates", nargs="*", help="candidate names (default: all for the device)")
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model-size", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    small = {"classes": 10, "files": 200, "batch": 16, "steps": 6, "warmup": 2, "rounds": 3}
    large = {"classes": 1000, "files": 10000, "batch": 256, "steps": 50, "warmup": 20, "rounds": 1}
    for key, value in (small if args.small else large).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.worker:
        model, size = args.model_size.rsplit(":", 1)
        print(json.dumps(run_candidate(args.worker, model, int(size), args)))
        return
    import torch

    cuda = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    names = args.candidates or list(GPU_CANDIDATES if cuda else CPU_CANDIDATES)
    unknown = sorted(set(names) - set(CANDIDATES))
    if unknown:
        raise SystemExit(f"train_speed: unknown candidate(s) {unknown}; choose from {list(CANDIDATES)}")
    models = list(args.models or (SMALL_MODELS if args.small else GPU_MODELS))
    args.folder = make_jpeg_folder(args.data_dir, args.source, args.classes, args.files)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = measure(models, names, args)
    end_load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (
        f"{args.files} JPEGs / {args.classes} classes (shorter side 300-500 px), batch per row (bN), "
        f"{args.warmup} + {args.steps} steps, median of {args.rounds} interleaved round(s); device "
        f"{'cuda' if cuda else 'cpu'}; load average {load:.1f} at start, {end_load:.1f} at the end, on "
        f"{os.cpu_count()} cores"
    )
    table = markdown(rows, header)
    if args.out:
        args.out.write_text(table)
    print(json.dumps(rows) if args.json else table)


if __name__ == "__main__":
    main()
