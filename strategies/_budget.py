"""Complexity budgets for DGConv search (Zhang et al. §3.3, Eq. 8-9 and §4 "Resource Constraint").

A budget turns the DGConv layers of a supernet into one differentiable number ζ and a target o::

    ζ = Σ_ℓ w_ℓ · ζ_ℓ,     ζ_ℓ = nnz(U_ℓ) = C_in·C_out / G_ℓ   (Eq. 8/9, through the STE)

with a per-layer weight w_ℓ that gives ζ a unit:

- ``b=B``      w_ℓ = 1,              o = Σ_ℓ C_in·C_out / B     (the paper: B = 32 is ResNeXt 32x4d's GConv size)
- ``params=N`` w_ℓ = k_ℓ²,           o = N − (parameters outside the DGConv weights)
- ``macs=N``   w_ℓ = k_ℓ²·H_out·W_out, o = N − (MACs outside the DGConv convs)

so that for ``params``/``macs`` "ζ ≤ o" means exactly "the frozen network has at most N parameters/MACs".
The smallest reachable ζ has every layer at its largest group count G = gcd(C_in, C_out); a budget
below it is refused before any training (:class:`Budget` construction raises ``ValueError``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

BUDGET_KINDS = ("b", "params", "macs")


def parse_budget(text: str) -> tuple[str, float]:
    """``"b=32"`` -> ("b", 32.0); ``"params=1.2e6"`` -> ("params", 1200000.0). ValueError on anything else."""
    kind, sep, value = str(text).partition("=")
    kind = kind.strip()
    if not sep or kind not in BUDGET_KINDS:
        raise ValueError(f"budget {text!r} is not KIND=VALUE with KIND one of {', '.join(BUDGET_KINDS)} "
                         "(e.g. b=32, params=1000000, macs=2e8)")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"budget {text!r}: {value!r} is not a number") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"budget {text!r}: the value must be a positive number")
    return kind, number


def dgconv_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(module name, DGConv2d)`` of every DGConv in ``model``, in registration (network) order."""
    from mgnas.ops.dgconv import DGConv2d

    return [(name, m) for name, m in model.named_modules() if isinstance(m, DGConv2d)]


def output_sizes(model: nn.Module, layers: Sequence[nn.Module], input_size: Sequence[int]) -> list[int]:
    """H_out·W_out of each layer in ``layers`` for one input of ``input_size`` (C, H, W): one forward with hooks."""
    sizes: dict[int, int] = {}

    def hook(mod: nn.Module, _inputs: object, out: Tensor) -> None:
        sizes.setdefault(id(mod), int(out.shape[-2] * out.shape[-1]))

    handles = [m.register_forward_hook(hook) for m in layers]
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            model(torch.zeros(1, *input_size, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    missing = [i for i, m in enumerate(layers) if id(m) not in sizes]
    if missing:
        raise ValueError(f"DGConv layers {missing} were not called in a forward pass; cannot size a macs budget")
    return [sizes[id(m)] for m in layers]


@dataclass
class Budget:
    """A complexity budget over the DGConv layers of one supernet.

    ``weights[ℓ]`` is w_ℓ, ``target`` is o, ``fixed`` is the part of the total outside the DGConv
    layers (0 for ``b``), ``spec`` the user's text (``"b=32"``).
    """

    spec: str
    kind: str
    value: float
    layers: list[nn.Module]
    weights: list[float]
    target: float
    fixed: float = 0.0

    def __post_init__(self) -> None:
        minimum = self.minimum()
        if self.target < minimum:
            unit = {"b": "nnz(U)", "params": "parameters", "macs": "MACs"}[self.kind]
            total_min = minimum + self.fixed
            hint = (f"; the smallest reachable b-budget is b={self._max_b():g}" if self.kind == "b"
                    else f"; the smallest reachable {self.kind} budget is {self.kind}={math.ceil(total_min)}")
            raise ValueError(
                f"impossible budget {self.spec}: o = {self.target:,.0f} {unit} is below the minimum "
                f"ζ = {minimum:,.0f} (every DGConv at its largest group count){hint}"
            )

    # ------------------------------------------------------------------ numbers
    def _max_b(self) -> float:
        dense = sum(m.in_channels * m.out_channels for m in self.layers)
        return dense / self.minimum()

    def minimum(self) -> float:
        """The smallest reachable ζ: every layer at G = gcd(C_in, C_out)."""
        return sum(w * m.in_channels * m.out_channels / math.gcd(m.in_channels, m.out_channels)
                   for w, m in zip(self.weights, self.layers))

    def zeta(self) -> Tensor:
        """ζ = Σ w_ℓ ζ_ℓ as a 0-dim tensor, differentiable w.r.t. the gates (STE)."""
        terms = [w * m.complexity().float() for w, m in zip(self.weights, self.layers)]
        return torch.stack(terms).sum() if terms else torch.zeros(())

    @torch.no_grad()
    def hard_zeta(self) -> float:
        """ζ of the current hard gates (a float): Σ w_ℓ C_in C_out / G_ℓ."""
        pairs = zip(self.weights, self.layers)
        return float(sum(w * m.in_channels * m.out_channels / m.num_groups() for w, m in pairs))

    def ratio(self) -> float:
        """ζ / o of the hard gates."""
        return self.hard_zeta() / self.target

    def describe(self) -> dict[str, float | str]:
        return {"budget": self.spec, "o": self.target, "zeta_min": self.minimum(), "fixed": self.fixed}


def make_budget(spec_text: str, model: nn.Module, *, input_size: Sequence[int] | None = None,
                static_params: int | None = None, static_macs: int | None = None) -> Budget:
    """The :class:`Budget` of ``spec_text`` over the DGConvs of ``model``.

    ``static_params`` / ``static_macs``: totals of the same network with every DGConv dense (needed for
    ``params=`` / ``macs=``; see :func:`dense_totals`); ``input_size`` (C, H, W) for ``macs=``.
    """
    kind, value = parse_budget(spec_text)
    layers = [m for _, m in dgconv_layers(model)]
    if not layers:
        raise ValueError("the supernet has no DGConv layer: nothing to search")
    k2 = [m.kernel_size * m.kernel_size for m in layers]
    dense = [m.in_channels * m.out_channels for m in layers]
    if kind == "b":
        return Budget(spec_text, kind, value, layers, [1.0] * len(layers), sum(dense) / value)
    if kind == "params":
        if static_params is None:
            raise ValueError("a params= budget needs the dense network's parameter count")
        fixed = static_params - sum(a * b for a, b in zip(k2, dense))
        return Budget(spec_text, kind, value, layers, [float(x) for x in k2], value - fixed, float(fixed))
    if input_size is None or static_macs is None:
        raise ValueError("a macs= budget needs the input size and the dense network's MACs")
    hw = output_sizes(model, layers, input_size)
    weights = [float(a * b) for a, b in zip(k2, hw)]
    fixed = static_macs - sum(w * d for w, d in zip(weights, dense))
    return Budget(spec_text, kind, value, layers, weights, value - fixed, float(fixed))
