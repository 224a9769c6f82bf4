"""Fast by default: `auto` runtime options per device (CPU, a faked CUDA GPU), the oversubscription guard, the
resolved settings in the run folder, and resuming across fast settings."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from effnet._util.hardware import cgroup_cpu_limit, usable_cpus
from effnet.cli import main
from effnet.commands.train import build_config
from effnet.train import TrainConfig, fit, load_checkpoint
from effnet.train.fast import (
    COMPILE_MIN_STEPS_PER_SHAPE,
    Machine,
    apply_fast_settings,
    probe_machine,
    resolve_fast_settings,
)
from test_train_loop import tiny_data, tiny_spec

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def _resolve(device: torch.device = CPU, *, steps: int = 100, sizes: int = 1, **changes):
    machine_keys = {"cpus", "load", "local_world_size", "torch_threads", "cuda_bf16"}
    machine = Machine(
        **{"cpus": 2, "load": 0.1, "torch_threads": 2, **{k: v for k, v in changes.items() if k in machine_keys}}
    )
    config = TrainConfig(**{k: v for k, v in changes.items() if k not in machine_keys})
    return resolve_fast_settings(config, device, machine, total_steps=steps, image_sizes=sizes)


def test_cpu_defaults_fp32_channels_last_all_free_cores():
    fast = _resolve()
    assert (fast.amp, fast.channels_last, fast.compile, fast.tf32, fast.cudnn_benchmark) == (
        None,
        True,
        False,
        False,
        False,
    )
    assert (fast.threads, fast.num_workers, fast.pin_memory, fast.persistent_workers) == (2, 0, False, False)
    assert set(fast.auto) == {"amp", "channels_last", "compile", "tf32", "threads", "num_workers"}
    assert fast.notes == ()
    line = fast.describe()
    assert "amp fp32 (auto)" in line and "channels_last on (auto)" in line and "2 thread(s) (auto)" in line
    # Big CPUs give a worker per 8 cores to augmentation and the rest to the step.
    big = _resolve(cpus=32, load=0.0, torch_threads=32)
    assert (big.num_workers, big.threads) == (4, 28)


def test_explicit_values_are_kept_and_not_marked_auto():
    fast = _resolve(amp="bf16", channels_last=False, compile=True, threads=2, num_workers=1)
    assert (fast.amp, fast.channels_last, fast.compile, fast.threads, fast.num_workers) == ("bf16", False, True, 2, 1)
    assert set(fast.auto) == {"tf32"}
    assert "channels_last off," in fast.describe() and "(auto)" not in fast.describe().split("tf32")[0]


@pytest.mark.parametrize(
    ("cpus", "load", "ranks", "expected"),
    [
        (2, 0.2, 1, 2),  # idle: every core
        (2, 0.7, 1, 1),  # one core mostly busy elsewhere
        (2, 5.0, 1, 1),  # oversubscribed: one thread, never zero
        (8, 2.0, 2, 3),  # two ranks share the 6 free cores
        (8, None, 1, 7),  # load unknown (no getloadavg): 7 threads + 1 augmentation worker
    ],
)
def test_cpu_threads_fit_the_free_cores(cpus, load, ranks, expected):
    fast = _resolve(cpus=cpus, load=load, local_world_size=ranks, torch_threads=cpus)
    assert fast.threads == expected


def test_oversubscribed_machine_warns_once_with_the_choice_and_the_override():
    (note,) = _resolve(load=3.5).notes
    assert "oversubscribed" in note and "load average 3.5 on 2 core(s)" in note
    assert "1 thread(s)" in note and "--threads N" in note
    (note,) = _resolve(load=3.5, threads=2).notes  # the user's 2 threads are kept, with advice
    assert "--threads 1" in note and _resolve(load=3.5, threads=2).threads == 2
    assert _resolve(load=1.9).notes == ()  # busy but not oversubscribed: no warning


def test_auto_threads_never_exceed_what_the_process_already_has_and_ignore_load_when_deterministic():
    assert _resolve(torch_threads=1).threads == 1  # e.g. a search worker set 1 thread per trial
    # --deterministic: the thread count (CPU summation order) must not depend on the load
    assert _resolve(load=5.0, deterministic=True).threads == 2


def test_cuda_defaults_from_a_faked_gpu():
    ampere = _resolve(CUDA, cpus=16, load=9.0, torch_threads=16, cuda_bf16=True)
    assert (ampere.amp, ampere.channels_last, ampere.tf32, ampere.cudnn_benchmark) == ("bf16", True, True, True)
    # Workers take the cores (load is ignored: the GPU computes); the main process only feeds the GPU.
    assert (ampere.num_workers, ampere.threads) == (15, 1)
    assert (ampere.pin_memory, ampere.persistent_workers, ampere.prefetch_factor) == (True, True, 4)
    assert ampere.notes == () and "tf32 on (auto)" in ampere.describe()
    volta = _resolve(CUDA, cpus=16, cuda_bf16=False)
    assert volta.amp == "fp16"  # with a GradScaler (setup makes one for fp16)
    eight_gpus = _resolve(CUDA, cpus=128, local_world_size=8, cuda_bf16=True)
    assert eight_gpus.num_workers == 15
    assert _resolve(CUDA, cpus=256, cuda_bf16=True).num_workers == 32  # capped: more only costs memory
    assert _resolve(CUDA, deterministic=True).cudnn_benchmark is False


def test_compile_auto_only_where_the_run_repays_it():
    assert _resolve(CUDA, steps=COMPILE_MIN_STEPS_PER_SHAPE - 1).compile is False
    assert _resolve(CUDA, steps=COMPILE_MIN_STEPS_PER_SHAPE).compile is True
    # Each progressive image size compiles again.
    assert _resolve(CUDA, steps=2 * COMPILE_MIN_STEPS_PER_SHAPE, sizes=4).compile is False
    assert _resolve(CPU, steps=10**7).compile is False
    assert _resolve(CUDA, steps=10, compile=True).compile is True


def test_probe_reads_gpu_capability_and_cpu_facts(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    machine = probe_machine(CUDA)
    assert machine.cuda_bf16 is True and machine.local_world_size == 4 and machine.cpus >= 1
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))  # V100: fp16
    assert probe_machine(CUDA).cuda_bf16 is False
    assert probe_machine(CPU).torch_threads == torch.get_num_threads()
    # cgroup v2 / v1 quotas and the affinity cap
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1.5 and usable_cpus(8, 1.5) == 2 and usable_cpus(2, None) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("400000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cgroup_cpu_limit(v1) == 4.0 and cgroup_cpu_limit(tmp_path / "missing") is None


def test_apply_sets_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        apply_fast_settings(_resolve(threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_config_values_flags_and_yaml():
    config = TrainConfig(compile="off", channels_last="on", amp="off", tf32="auto")
    assert (config.compile, config.channels_last, config.amp) == (False, True, None)
    for bad, message in [
        ({"amp": "fp8"}, "amp must be"),
        ({"compile": "maybe"}, "compile must be"),
        ({"num_workers": -1}, "num_workers must be"),
        ({"threads": 0}, "threads must be"),
    ]:
        with pytest.raises(ValueError, match=message):
            TrainConfig(**bad)
    assert TrainConfig(threads=None).threads is None  # an older run folder's "torch's default"
    from effnet.cli import build_parser

    args = build_parser().parse_args(
        ["train", "--compile", "off", "--amp", "off", "--threads", "1", "--num-workers", "auto", "--channels-last"]
    )
    config = build_config(args)
    assert (config.compile, config.amp, config.threads, config.num_workers, config.channels_last) == (
        False,
        None,
        1,
        "auto",
        True,
    )
    assert build_config(build_parser().parse_args(["train", "--no-channels-last"])).channels_last is False
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--threads", "0"])


def test_run_folder_records_the_resolved_settings_and_keeps_auto(tmp_path, capsys):
    config = TrainConfig(
        data=tiny_data(num_train=32, num_val=16),
        epochs=1,
        batch_size=16,
        image_size=32,
        output_dir=str(tmp_path),
        run_name="auto",
        tensorboard=False,
        plot=False,
    )
    result = fit(config, spec=tiny_spec(), progress=True, bar=False)
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    fast = saved["fast_settings"]
    assert fast["device"] == "cpu" and fast["channels_last"] is True and fast["amp"] is None
    assert fast["threads"] >= 1 and "threads" in fast["auto"] and "channels_last" in fast["auto"]
    assert saved["channels_last"] == "auto" and saved["amp"] == "auto"  # a resume re-fits its own device
    assert TrainConfig.from_yaml(result.run_dir / "config.yaml").channels_last == "auto"
    state = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")
    assert state["fast_settings"] == fast
    # channels_last trained, plain tensors saved
    assert all(t.is_contiguous() for t in state["model"].values())
    assert "fast settings: amp fp32 (auto), channels_last on (auto)" in capsys.readouterr().out


def _tiny(tmp_path, name: str, epochs: int, **changes) -> TrainConfig:
    return TrainConfig(
        data=tiny_data(num_train=64, num_val=32),
        epochs=epochs,
        batch_size=16,
        image_size=32,
        optimizer="adamw",
        lr=2e-3,
        schedule="constant",
        warmup_epochs=0,
        ema_decay=0.0,
        deterministic=True,
        threads=1,
        output_dir=str(tmp_path),
        run_name=name,
        tensorboard=False,
        plot=False,
        **changes,
    )


def test_resume_with_other_fast_settings_matches_within_bf16_tolerance(tmp_path):
    fp32 = {"amp": None, "channels_last": False}
    full = fit(_tiny(tmp_path, "full", 2, **fp32), spec=tiny_spec(), progress=False)
    first = fit(_tiny(tmp_path, "switched", 1, **fp32), spec=tiny_spec(), progress=False)
    resumed = fit(
        _tiny(tmp_path, "switched", 2, amp="bf16", channels_last=True, resume=True), spec=tiny_spec(), progress=False
    )
    assert resumed.history[0] == first.history[0]  # the fp32 epoch, carried over
    got, want = resumed.history[1], full.history[1]
    for key in ("train_loss", "val_loss"):
        assert math.isfinite(got[key]) and got[key] == pytest.approx(want[key], abs=0.03), key
    state = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")
    assert state["fast_settings"]["amp"] == "bf16" and all(t.is_contiguous() for t in state["model"].values())


def test_persistent_workers_augment_each_epoch_like_the_main_process(tmp_path):
    # Workers hold the dataset copy they started with; the epoch travels with each index, so two workers over
    # two epochs give exactly the single-process run (each epoch's crops drawn from its own seed).
    main_process = fit(_tiny(tmp_path, "w0", 2, num_workers=0), spec=tiny_spec(), progress=False)
    workers = fit(_tiny(tmp_path, "w2", 2, num_workers=2), spec=tiny_spec(), progress=False)
    for ours, theirs in zip(main_process.history, workers.history, strict=True):
        for key in ("train_loss", "val_loss", "val_acc"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-6), key


def test_cli_prints_the_fast_settings_header(tmp_path, capsys):
    spec = tiny_spec().save(tmp_path / "tiny.json")
    code = main(
        [
            "train",
            "--model",
            str(spec),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--num-train",
            "32",
            "--num-val",
            "16",
            "--image-size",
            "32",
            "--output-dir",
            str(tmp_path),
            "--run-name",
            "cli",
            "--quiet",
            "--no-tensorboard",
            "--no-plot",
            "--threads",
            "1",
            "--compile",
            "off",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "compile off," in out and "1 thread(s)," in out and "channels_last on (auto)" in out
