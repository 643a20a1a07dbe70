"""Every registered model builds from its spec and trains one step (new models are tested automatically)."""

import pytest
import torch

import mgnas
from mgnas.models import build_model, list_models, model_spec
from mgnas.spec import SpecError, loads


def _small_input(spec):
    c, h, _ = spec.input_size
    side = 64 if h >= 128 else h
    return torch.randn(2, c, side, side)


@pytest.mark.parametrize("name", list_models())
def test_every_model_forward_backward(name):
    spec = model_spec(name)
    model = build_model(spec)
    model.train()
    out = model(_small_input(spec))
    assert out.shape == (2, spec.num_classes)
    assert torch.isfinite(out).all()
    out.float().logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads), "some parameter got no gradient"


@pytest.mark.parametrize("name", list_models())
def test_spec_json_round_trip_rebuilds_same_params(name):
    spec = model_spec(name)
    again = loads(spec.to_json())
    assert again == spec and again.content_hash() == spec.content_hash()
    assert sum(p.numel() for p in build_model(again).parameters()) == sum(
        p.numel() for p in build_model(spec).parameters()
    )


def test_create_model_and_listing():
    assert "resnext50_32x4d" in mgnas.list_models("resnext*")
    assert mgnas.list_models("resnext") == mgnas.list_models("*resnext*")
    assert isinstance(mgnas.create_model("resnet20_cifar"), torch.nn.Module)


def test_unknown_model_names_close_matches():
    with pytest.raises(ValueError, match="did you mean resnext50_32x4d"):
        model_spec("resnext50_32x8d")


def test_unknown_kwarg_names_valid_ones():
    with pytest.raises(ValueError, match=r"unknown argument 'widht'; valid arguments: .*num_classes"):
        model_spec("resnet20_cifar", widht=2)


def test_none_kwargs_are_dropped():
    assert model_spec("resnet20_cifar", num_classes=None) == model_spec("resnet20_cifar")


def test_unknown_block_key_is_a_spec_error_with_path():
    data = model_spec("resnet20_cifar").to_dict()
    data["stages"][1]["blocks"][0]["colour"] = "red"
    with pytest.raises(SpecError, match=r"^stages\[1\]\.blocks\[0\]\.colour: unknown key for block type 'basic'"):
        build_model(data)


def test_block_channel_mismatch_is_a_spec_error():
    data = model_spec("resnet20_cifar").to_dict()
    data["stages"][0]["blocks"][0]["conv2"]["in_channels"] = 8
    msg = r"stages\[0\]\.blocks\[0\]\.conv2\.in_channels: is 8 but the block feeds it 16"
    with pytest.raises(SpecError, match=msg):
        build_model(data)


def test_duplicate_registration_is_an_error():
    from mgnas.models import register_model

    def resnet20_cifar():  # same name as a registered model
        raise AssertionError

    with pytest.raises(ValueError, match="already registered"):
        register_model(resnet20_cifar)


def test_adapt_spec_to_other_data():
    from mgnas.models import adapt_spec

    spec = adapt_spec(model_spec("g_resnet20_cifar"), in_channels=1, num_classes=7, input_size=(1, 8, 8))
    assert spec.in_channels == 1 and spec.num_classes == 7 and spec.input_size == (1, 8, 8)
    assert spec.get("stem.conv.in_channels") == 1
    assert build_model(spec)(torch.randn(2, 1, 8, 8)).shape == (2, 7)
