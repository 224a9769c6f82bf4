"""Recipe pieces against their formulas: RMSProp-TF, the lr schedule, EMA, progressive stages, the config."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import effnet
from effnet.train import (
    TABLE6,
    LRSchedule,
    ModelEma,
    RMSpropTF,
    TrainConfig,
    build_optimizer,
    default_range,
    param_groups,
    progressive_stages,
    tf_ema_decay,
)


def _tf_rmsprop_reference(w, grads, lrs, rho=0.9, mu=0.9, eps=1e-3, wd=0.0):
    """REFERENCE.md's TF RMSProp, written out element by element in plain floats."""
    w = list(w)
    ms = [1.0] * len(w)  # TF starts the mean square at one
    mom = [0.0] * len(w)
    for g_step, lr in zip(grads, lrs, strict=True):
        for i, g in enumerate(g_step):
            g = g + wd * w[i]
            ms[i] = rho * ms[i] + (1 - rho) * g * g
            mom[i] = mu * mom[i] + lr * g / math.sqrt(ms[i] + eps)
            w[i] = w[i] - mom[i]
    return w


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_rmsprop_tf_two_steps_match_the_formula(wd):
    grads = [[0.5, -2.0, 0.0], [-1.5, 0.25, 3.0]]
    lrs = [0.1, 0.05]  # the lr changes between steps: TF keeps it inside the momentum buffer
    param = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    opt = RMSpropTF([param], lr=lrs[0], weight_decay=wd)
    for g, lr in zip(grads, lrs, strict=True):
        opt.param_groups[0]["lr"] = lr
        param.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    expected = _tf_rmsprop_reference([1.0, -2.0, 0.5], grads, lrs, wd=wd)
    assert param.detach().tolist() == pytest.approx(expected, rel=1e-12, abs=1e-15)
    # PyTorch's RMSprop (ms from 0, eps outside the root) gives a different first step.
    other = nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    torch_opt = torch.optim.RMSprop([other], lr=lrs[0], alpha=0.9, eps=1e-3, momentum=0.9)
    other.grad = torch.tensor(grads[0], dtype=torch.float64)
    torch_opt.step()
    assert other.detach().tolist() != pytest.approx(_tf_rmsprop_reference([1.0, -2.0, 0.5], grads[:1], lrs[:1]))


def test_weight_decay_skips_batchnorm_and_biases():
    model = effnet.create_model("efficientnet_b0", num_classes=10)
    decay, no_decay = param_groups(model, 1e-5)
    assert decay["weight_decay"] == 1e-5 and no_decay["weight_decay"] == 0.0
    no_decay_ids = {id(p) for p in no_decay["params"]}
    for name, param in model.named_parameters():
        is_bn_or_bias = name.endswith(".bias") or ".bn." in name
        assert (id(param) in no_decay_ids) == is_bn_or_bias, name


@pytest.mark.parametrize(("name", "biases_decayed"), [("efficientnet_b0", True), ("efficientnetv2_b0", False)])
def test_weight_decay_groups_follow_each_reference(name, biases_decayed):
    # V1 (tensorflow/tpu main.py): L2 on every variable without 'batch_normalization' in its name, so the SE
    # and classifier biases are decayed. V2 (automl hparams): weight_decay_exclude='.*(bias|gamma|beta).*'.
    model = effnet.create_model(name, num_classes=10)
    optimizer = build_optimizer(model, "rmsprop_tf", 0.01, weight_decay=1e-5)
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    biases = [(n, p) for n, p in model.named_parameters() if n.endswith(".bias") and ".bn." not in n]
    assert any(n.startswith("classifier") for n, _ in biases) and any(".se." in n for n, _ in biases)
    for param_name, param in model.named_parameters():
        if ".bn." in param_name:
            assert id(param) not in decayed, param_name
        elif param_name.endswith(".bias"):
            assert (id(param) in decayed) == biases_decayed, param_name
        else:
            assert id(param) in decayed, param_name


def test_step_schedule_values():
    base = 0.016 * 512 / 256  # lr 0.016 per 256 images at batch 512
    schedule = LRSchedule(base, steps_per_epoch=100, total_steps=100 * 350, warmup_steps=500, kind="step")
    assert schedule(0) == pytest.approx(base / 500)
    assert schedule(249) == pytest.approx(base * 250 / 500)
    assert schedule(499) == pytest.approx(base)
    # x0.97 every 2.4 epochs = 240 steps, counted from step 0 (TF's staircase exponential_decay).
    assert schedule(500) == pytest.approx(base * 0.97**2)
    assert schedule(719) == pytest.approx(base * 0.97**2)
    assert schedule(720) == pytest.approx(base * 0.97**3)
    assert schedule(34_999) == pytest.approx(base * 0.97 ** math.floor(34_999 / 240))


def test_cosine_and_constant_schedules():
    cosine = LRSchedule(1.0, steps_per_epoch=10, total_steps=110, warmup_steps=10, kind="cosine", min_lr=0.1)
    assert cosine(10) == pytest.approx(1.0)
    assert cosine(60) == pytest.approx(0.55)
    assert cosine(110) == pytest.approx(0.1)
    constant = LRSchedule(5e-4, steps_per_epoch=10, total_steps=150, kind="constant")
    assert {constant(s) for s in (0, 77, 149)} == {5e-4}
    with pytest.raises(ValueError, match="schedule"):
        LRSchedule(1.0, 10, 100, kind="linear")


def test_ema_follows_tf_decay_formula():
    assert tf_ema_decay(0.9999, 0) == pytest.approx(0.1)
    assert tf_ema_decay(0.9999, 90) == pytest.approx(0.91)
    assert tf_ema_decay(0.9999, 10**7) == 0.9999
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = ModelEma(model, decay=0.9999)
    start = ema.module[0].weight.clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.fill_(2.0)
    # The TF reference reads the global step after the optimizer step: the first update uses n=1, decay 2/11.
    ema.update(model)
    assert torch.allclose(ema.module[0].weight, 2 / 11 * start + 9 / 11 * (start + 1.0))
    assert torch.allclose(ema.module[1].running_mean, torch.full((2,), 2.0 * 9 / 11))
    with torch.no_grad():
        model[0].weight.add_(1.0)
    before = ema.module[0].weight.clone()
    ema.update(model)  # n=2: decay 3/12
    assert torch.allclose(ema.module[0].weight, 3 / 12 * before + 9 / 12 * model[0].weight)
    assert not any(p.requires_grad for p in ema.module.parameters())
    restored = ModelEma(model, decay=0.5)
    restored.load_state_dict(ema.state_dict())
    assert restored.num_updates == 2 and restored.decay == 0.9999


def test_progressive_stages_follow_table6():
    stages = progressive_stages(TABLE6["s"], epochs=40, num_stages=4)
    assert [(s.first_epoch, s.end_epoch) for s in stages] == [(0, 10), (10, 20), (20, 30), (30, 40)]
    assert [s.image_size for s in stages] == [128, 185, 243, 300]
    assert [s.magnitude for s in stages] == [5, 8, 12, 15]
    assert [s.dropout for s in stages] == pytest.approx([0.1, 0.1 + 0.2 / 3, 0.1 + 0.4 / 3, 0.3])
    assert {s.mixup_alpha for s in stages} == {0.0}
    large = progressive_stages(TABLE6["l"], epochs=8, num_stages=4)
    assert [s.mixup_alpha for s in large] == pytest.approx([0.0, 0.4 / 3, 0.8 / 3, 0.4])
    assert [s.magnitude for s in large] == [5, 12, 18, 25]
    assert [s.image_size for s in large] == [128, 212, 296, 380]


def test_default_progressive_range_per_model_size():
    assert default_range(effnet.get_spec("efficientnetv2_s"), 300) == TABLE6["s"]
    medium = default_range(effnet.get_spec("efficientnetv2_m"), 380)
    assert medium == TABLE6["m"]
    assert default_range(effnet.get_spec("efficientnetv2_xl"), 380).dropout == (0.1, 0.5)
    small = default_range(effnet.get_spec("efficientnet_b0"), 64)  # same 128/300 ratio, floored at 32 px
    assert small.image_size == (32, 64)


def test_config_round_trip_and_errors(tmp_path):
    config = TrainConfig.from_recipe("finetune", epochs=3, progressive_image_size=(64, 96))
    # lr per 256 images (batch 32: 0.01), a 10% warm-up, a frozen backbone (measured: docs/finetune.md).
    assert (config.schedule, config.frozen_stages) == ("cosine", -1)
    assert (config.peak_lr, config.warmup) == pytest.approx((0.01, 0.3))
    path = config.save_yaml(tmp_path / "config.yaml")
    assert TrainConfig.from_yaml(path) == config
    assert TrainConfig(batch_size=512).peak_lr == pytest.approx(0.032)
    assert TrainConfig(epochs=350).warmup == 5.0 and TrainConfig(epochs=3).warmup == pytest.approx(0.3)
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({"epochs": 1, "learning_rate": 0.1})
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lamb")
    with pytest.raises(ValueError, match="fp16"):
        from effnet.train.evaluate import autocast_context

        autocast_context(torch.device("cpu"), "fp16")


def test_memory_efficient_act_and_grad_checkpointing_keep_the_numbers():
    from effnet.models.layers import ConvNormAct
    from effnet.models.layers.conv_norm_act import use_memory_efficient_activations

    torch.manual_seed(0)
    spec = effnet.scale(effnet.get_spec("efficientnet_b0"), width=0.25, depth=0.34)
    spec = spec.replace(drop_path_rate=0.0, dropout=0.0)  # no randomness between the two models
    reference = effnet.create_model(spec, num_classes=5)
    saving = effnet.create_model(spec, num_classes=5)
    saving.load_state_dict(reference.state_dict())
    units = sum(isinstance(m, ConvNormAct) and isinstance(m.act, nn.SiLU) for m in reference.modules())
    assert use_memory_efficient_activations(saving) == units
    saving.set_grad_checkpointing(True)
    images = torch.randn(4, 3, 64, 64)
    losses = []
    for model in (reference, saving):
        loss = model(images).logsumexp(dim=1).mean()
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    grads = [torch.cat([p.grad.flatten() for p in model.parameters()]) for model in (reference, saving)]
    assert (grads[0] - grads[1]).norm() <= 1e-4 * grads[0].norm()


def test_cli_config_precedence(tmp_path):
    from effnet.cli import build_parser
    from effnet.commands.train import build_config

    def config(*argv):
        return build_config(build_parser().parse_args(["train", *argv]))

    # No options: the quick recipe (a few minutes on 2 cores); flags override it.
    assert config() == TrainConfig.from_recipe("quick")
    tuned = config("--epochs", "5", "--augment", "none", "--crop-scale", "0.3", "1", "--num-train", "100")
    assert (tuned.epochs, tuned.augment, tuned.crop_scale, tuned.data.num_train) == (5, None, (0.3, 1.0), 100)
    assert config("--recipe", "paper") == TrainConfig()
    # A YAML file replaces the quick recipe; flags still win over it.
    path = TrainConfig(epochs=7, lr=0.5).save_yaml(tmp_path / "c.yaml")
    from_file = config("--config", str(path), "--lr", "0.1")
    assert (from_file.epochs, from_file.lr, from_file.optimizer) == (7, 0.1, "rmsprop_tf")
    with pytest.raises(ValueError, match="unknown training option"):
        (tmp_path / "bad.yaml").write_text("epochz: 3\n")
        config("--config", str(tmp_path / "bad.yaml"))


def test_depthwise_init_is_a_recipe_choice():
    from effnet.train.start import build_model, resolve_run_spec

    def depthwise_stds(**options):
        cfg = TrainConfig.from_recipe("quick", **options)  # the option is honoured whatever the recipe says
        torch.manual_seed(0)
        model = build_model(cfg, resolve_run_spec(cfg, None, None), 10, None)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups == m.out_channels > 1]
        wide = [m for m in convs if m.out_channels >= 64]  # enough weights for a close std
        return [(float(m.weight.detach().std()), m.kernel_size[0] ** 2, m.out_channels) for m in wide]

    # The reference's fan-out is k*k (std sqrt(2/9) for 3x3), PyTorch's k*k*C: sqrt(C) times smaller.
    for std, taps, _ in depthwise_stds(depthwise_init="reference"):
        assert std == pytest.approx(math.sqrt(2 / taps), rel=0.15)
    for std, taps, channels in depthwise_stds(depthwise_init="pytorch"):
        assert std == pytest.approx(math.sqrt(2 / (taps * channels)), rel=0.15)
    assert TrainConfig.from_recipe("quick").depthwise_init == "reference"  # measured: docs/training.md
    assert TrainConfig().depthwise_init == "reference"
    with pytest.raises(ValueError, match="depthwise_init must be one of"):
        TrainConfig(depthwise_init="kaiming")
