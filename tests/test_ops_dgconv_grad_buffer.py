"""The sparse DGConv's reused dense weight gradient (``DenseGradBuffer``) and its plane-wise channel gathers
(``ChannelIndex``) change no value: training steps, gate flips, held gradients, in-place edits of ``.grad``,
gradient accumulation and copies all give the masked form's numbers."""

import copy
import io
import pickle

import pytest
import torch
from torch import nn

from mgnas.ops import DGConv2d
from mgnas.ops._channels import ChannelIndex


def _net(impl: str, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 32, 1), DGConv2d(32, 32, 3, impl=impl), nn.ReLU(), DGConv2d(32, 16, 3, stride=2,
                                                                                                 impl=impl))
    net[1].set_gates([0, 1, 0, 1, 0], magnitude=1.0)
    net[3].set_gates([1, 0, 0, 1], magnitude=1.0)
    return net.double()


def _data(step: int) -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(step), dtype=torch.float64)


def _loss(net: nn.Module, step: int) -> torch.Tensor:
    return net(_data(step)).square().mean()


def _dgconvs(net: nn.Module) -> list[DGConv2d]:
    return [m for m in net.modules() if isinstance(m, DGConv2d)]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def test_buffer_is_reused_across_steps() -> None:
    net = _net("sparse")
    m = _dgconvs(net)[0]
    storages = []
    for step in range(3):
        net.zero_grad(set_to_none=True)
        _loss(net, step).backward()
        alias = m.__dict__["_grad_buffer"].alias
        assert m.weight.grad.untyped_storage().data_ptr() == alias.untyped_storage().data_ptr()
        storages.append(id(alias))  # the buffer's own tensor: the same object when it was reused
    assert storages[0] == storages[1] == storages[2]  # no new allocation once nothing else holds the gradient


@pytest.mark.parametrize("fused", [False, True])
def test_training_with_gate_flips_equals_masked(fused: bool) -> None:
    """SGD with momentum and weight decay over steps whose hard gates flip in between: the weights, gates and
    gradients of sparse and masked stay equal (the blocks of the previous layout are zeroed on a flip)."""
    nets = {impl: _net(impl) for impl in ("masked", "sparse")}
    opts = {impl: torch.optim.SGD(n.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, fused=fused)
            for impl, n in nets.items()}
    flips = {2: ([1, 1, 0, 0, 0], [0, 0, 1, 1]), 4: ([0, 0, 0, 0, 0], [1, 1, 1, 1]), 5: ([1, 0, 1, 0, 1], [0, 1, 0, 1])}
    for step in range(7):
        for impl, net in nets.items():
            if step in flips:
                for m, pattern in zip(_dgconvs(net), flips[step]):
                    m.set_gates(pattern, magnitude=1.0)
            opts[impl].zero_grad(set_to_none=True)
            _loss(net, step).backward()
        for (name, a), b in zip(nets["sparse"].named_parameters(), nets["masked"].parameters()):
            assert _rel(a.grad, b.grad) < 1e-9, f"step {step}: {name}.grad"
        for opt in opts.values():
            opt.step()
    for (name, a), b in zip(nets["sparse"].named_parameters(), nets["masked"].parameters()):
        assert _rel(a.detach(), b.detach()) < 1e-9, name


def test_a_held_gradient_is_never_overwritten() -> None:
    net = _net("sparse")
    w = _dgconvs(net)[0].weight
    _loss(net, 0).backward()
    held, expected = w.grad, w.grad.clone()
    net.zero_grad(set_to_none=True)
    _loss(net, 1).backward()
    assert torch.equal(held, expected)
    assert w.grad.untyped_storage().data_ptr() != held.untyped_storage().data_ptr()
    view = w.grad[0]  # a view holds the storage too
    expected = view.clone()
    net.zero_grad(set_to_none=True)
    _loss(net, 2).backward()
    assert torch.equal(view, expected)


def test_autograd_grad_result_is_not_overwritten() -> None:
    net = _net("sparse")
    w = _dgconvs(net)[0].weight
    (g1,) = torch.autograd.grad(_loss(net, 0), [w])
    expected = g1.clone()
    (g2,) = torch.autograd.grad(_loss(net, 1), [w])
    assert torch.equal(g1, expected) and not torch.equal(g1, g2)


@pytest.mark.parametrize("edit", ["add_", "clip", "data"])
def test_in_place_edits_of_grad_do_not_leak_into_the_next_step(edit: str) -> None:
    """An in-place edit of ``.grad`` (here one that writes off the blocks) is seen by the version counter: the
    next gradient is built from zeros. ``.data`` edits that only zero stay exact too."""
    nets = {impl: _net(impl) for impl in ("masked", "sparse")}
    for net in nets.values():
        _loss(net, 0).backward()
    w = _dgconvs(nets["sparse"])[0].weight
    if edit == "add_":
        w.grad.add_(1.0)
    elif edit == "clip":
        nn.utils.clip_grad_norm_(nets["sparse"].parameters(), 1e-3)
    else:
        w.grad.data.zero_()
    for net in nets.values():
        net.zero_grad(set_to_none=True)
        _loss(net, 1).backward()
    for a, b in zip(nets["sparse"].parameters(), nets["masked"].parameters()):
        assert _rel(a.grad, b.grad) < 1e-9


def test_gradient_accumulation_equals_masked() -> None:
    nets = {impl: _net(impl) for impl in ("masked", "sparse")}
    for net in nets.values():
        for step in range(3):  # no zero_grad in between: .grad accumulates
            _loss(net, step).backward()
    for a, b in zip(nets["sparse"].parameters(), nets["masked"].parameters()):
        assert _rel(a.grad, b.grad) < 1e-9


def test_copies_and_pickles_do_not_share_or_carry_the_buffer() -> None:
    net = _net("sparse")
    _loss(net, 0).backward()
    m = _dgconvs(net)[0]
    assert m.__dict__["_grad_buffer"].alias is not None
    twin = copy.deepcopy(net)
    assert _dgconvs(twin)[0].__dict__["_grad_buffer"].alias is None
    loaded = pickle.loads(pickle.dumps(net))
    assert _dgconvs(loaded)[0].__dict__["_grad_buffer"].alias is None
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    restored = torch.load(buf, weights_only=False)
    for copy_ in (twin, restored):
        copy_.zero_grad(set_to_none=True)
        net.zero_grad(set_to_none=True)
        _loss(copy_, 3).backward()
        _loss(net, 3).backward()
        for a, b in zip(copy_.parameters(), net.parameters()):
            assert torch.equal(a.grad, b.grad)


@pytest.mark.parametrize("shape", [(2, 12, 5, 5), (1, 12, 1, 1), (4, 12, 3, 7)])
def test_channel_index_equals_index_select(shape: tuple[int, ...]) -> None:
    gen = torch.Generator().manual_seed(0)
    index = torch.randint(0, shape[1], (30,), generator=gen)
    gather = ChannelIndex(index)
    x = torch.randn(shape, generator=gen)
    assert torch.equal(gather(x), x.index_select(1, index))
    cl = x.to(memory_format=torch.channels_last)
    assert torch.equal(gather(cl), x.index_select(1, index))
    strided = torch.randn(shape[0], shape[1], shape[2] * 2, shape[3], generator=gen)[:, :, ::2]
    assert torch.equal(gather(strided), strided.index_select(1, index))


def test_channel_index_follows_the_batch_size() -> None:
    index = torch.tensor([3, 0, 2, 2, 1])
    gather = ChannelIndex(index)
    for n in [1, 2, 3, 5, 7, 11, 13, 17, 19, 23, 2]:  # more sizes than it keeps: rebuilt as needed
        x = torch.randn(n, 4, 3, 3)
        assert torch.equal(gather(x), x.index_select(1, index))


def test_channel_index_keeps_channels_last() -> None:
    index = torch.tensor([5, 1, 1, 0, 3])
    x = torch.randn(3, 6, 4, 5).contiguous(memory_format=torch.channels_last)
    out = ChannelIndex(index)(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, x.index_select(1, index))


def test_channels_last_model_keeps_dgconv_weights_contiguous_and_exact() -> None:
    """``.to(memory_format=torch.channels_last)`` (``train.channels_last``) leaves DGConv weights and their
    gradients NCHW-contiguous (the sparse form gathers blocks from that layout); results equal the masked form's."""
    nets = {impl: _net(impl) for impl in ("masked", "sparse")}
    for net in nets.values():
        _loss(net, 0).backward()
        net.to(memory_format=torch.channels_last)
        for m in _dgconvs(net):
            assert m.weight.is_contiguous() and m.weight.grad.is_contiguous()
        net.zero_grad(set_to_none=True)
        x = _data(1).contiguous(memory_format=torch.channels_last)
        net(x).square().mean().backward()
    for a, b in zip(nets["sparse"].parameters(), nets["masked"].parameters()):
        assert _rel(a.grad, b.grad) < 1e-9


def test_moving_the_module_drops_the_buffer() -> None:
    net = _net("sparse")
    _loss(net, 0).backward()
    assert all("_grad_buffer" in m.__dict__ for m in _dgconvs(net))
    net.float()
    assert not any("_grad_buffer" in m.__dict__ for m in _dgconvs(net))
    net.zero_grad(set_to_none=True)
    net(_data(1).float()).square().mean().backward()
    assert all(m.weight.grad.dtype == torch.float32 for m in _dgconvs(net))
