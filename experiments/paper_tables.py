"""Paper parameter/MAC tables next to mgnas's measured counts.

    python experiments/paper_tables.py                 # print the table
    python experiments/paper_tables.py --write         # regenerate experiments/README.md's table
    python experiments/paper_tables.py --check         # exit 1 if a row with a tolerance is out of it

Every row is one named model + arguments, the number printed in the paper, and the tolerance the
project holds itself to (None: reported only, with the reason for the gap in the model's docstring).
tests/test_paper_tables.py asserts the same rows.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).resolve().parent


class Row(NamedTuple):
    source: str  # paper and table
    model: str
    kwargs: dict[str, Any]
    params: float  # the paper's count
    tol: float | None  # relative tolerance on params (None: report only)
    macs: float | None = None  # the paper's FLOPs/MACs (multiply-adds), if given
    macs_tol: float | None = None
    input: str | None = None  # default: the spec's own input size


M, K, G = 1e6, 1e3, 1e9
ROWS: tuple[Row, ...] = (
    Row("ResNet (He et al.) / MGiaD Tab. I", "resnet20_cifar", {}, 270 * K, 0.01),
    Row("ResNet / MGIC Tab. 2", "resnet56_cifar", {}, 0.85 * M, 0.01, 125 * M, 0.01),
    Row("MGiaD Tab. I", "resnet18_cifar", {}, 11_174 * K, 0.01),
    Row("MGiaD Tab. I", "mgnet_cifar", {"levels": 4}, 2_751 * K, 0.01),
    Row("MGiaD Tab. I", "mgnet_cifar", {"levels": 3}, 101 * K, 0.01),
    Row("MGiaD Tab. II", "mgiad_cifar", {"coarse_channels": 64, "group_size": 4}, 393 * K, 0.04),
    Row("MGiaD Tab. II", "mgiad_cifar", {"coarse_channels": 64, "group_size": 8}, 458 * K, 0.04),
    Row("MGiaD Tab. II", "mgiad_cifar", {"coarse_channels": 64, "group_size": 64}, 1_361 * K, 0.04),
    Row("MGiaD Tab. II", "mgiad_cifar", {"coarse_channels": 64, "group_size": 4, "channel_scale": 3}, 1_020 * K, 0.04),
    Row("MGiaD Tab. II", "mgiad_cifar", {"coarse_channels": 64, "group_size": 8, "channel_scale": 3}, 1_269 * K, 0.04),
    Row("Two-level Tab. 3", "wrn28_10", {"conv": "standard"}, 36.48 * M, 0.005),
    Row("Two-level Tab. 3", "wrn28_10", {"conv": "group", "groups": 2}, 18.25 * M, 0.005),
    Row("Two-level Tab. 3", "wrn28_10", {"conv": "two_level", "groups": 2}, 18.35 * M, 0.005),
    Row("Two-level Tab. 3", "wrn28_10", {"conv": "group", "groups": 16}, 2.30 * M, 0.005),
    Row("Two-level Tab. 3", "wrn28_10", {"conv": "two_level", "groups": 16}, 2.54 * M, 0.005),
    Row("Two-level Tab. 4", "mobilenetv2", {"conv": "standard"}, 3.50 * M, 0.02),
    Row("Two-level Tab. 4", "mobilenetv2", {"conv": "group", "groups": 2}, 2.44 * M, 0.02),
    Row("Two-level Tab. 4", "mobilenetv2", {"conv": "two_level", "groups": 2}, 2.47 * M, 0.02),
    Row("Two-level Tab. 4", "mobilenetv2", {"conv": "group", "groups": 4}, 1.91 * M, 0.02),
    Row("Two-level Tab. 4", "mobilenetv2", {"conv": "two_level", "groups": 4}, 1.95 * M, 0.02),
    Row("Two-level Tab. 4", "mobilenetv2", {"conv": "group", "groups": 8}, 1.65 * M, 0.02),
    Row("Two-level Tab. 4", "mobilenetv2", {"conv": "two_level", "groups": 8}, 1.72 * M, 0.02),
    Row("DGConv Tab. 2 / ResNeXt", "resnext50_32x4d", {}, 25.0 * M, 0.01, 4.2 * G, 0.02),
    Row("DGConv Tab. 2 / ResNeXt", "resnext101_32x4d", {}, 44.2 * M, 0.01),
    Row("MGIC Tab. 3", "mgic_resnet50", {"group_size": 32, "coarse_size": 64}, 9.4 * M, 0.03, 1.6 * G, None),
    Row("MGIC Tab. 3", "mgic_resnet50", {"group_size": 64, "coarse_size": 64}, 15.1 * M, 0.03, 2.5 * G, None),
    Row("MGIC Tab. 3", "mgic_resnet50", {"group_size": 16, "coarse_size": 64}, 6.2 * M, 0.03, 1.0 * G, None),
    Row("MGIC Tab. 2", "mgic_resnet56", {"group_size": 8, "coarse_size": 16}, 0.41 * M, None, 60 * M, None),
    Row("MGIC Tab. 4", "mgic_mobilenetv3_large", {"width": 0.6}, 2.3 * M, None, 48 * M, None),
    Row("MGIC Tab. 4", "mgic_mobilenetv3_large", {"width": 1.0}, 5.2 * M, None, 145 * M, None),
    Row("MGIC Tab. 4", "mgic_mobilenetv3_large", {"width": 1.2}, 7.1 * M, None, 233 * M, None),
    Row("Ke et al. ImageNet", "r_mg34", {}, 32.9 * M, 0.01, 5.76 * G, 0.01),
    Row("Ke et al. CIFAR-100", "r_mg_cifar", {"depth": 12}, 20.56 * M, 0.01, 457.20 * M, 0.01),
    Row("Ke et al. CIFAR-100", "r_mg_cifar", {"depth": 22}, 44.79 * M, 0.01, 1007.70 * M, 0.01),
    Row("Ke et al. CIFAR-100", "r_mg_cifar", {"depth": 32}, 69.02 * M, 0.01, 1558.20 * M, 0.01),
    Row("Ke et al. CIFAR-100", "r_mg_cifar", {"depth": 42}, 93.26 * M, 0.01, 2108.71 * M, 0.01),
    Row("Ke et al. CIFAR-100", "mg_cifar", {"depth": 6}, 8.34 * M, 0.01, 116.63 * M, 0.01),
    Row("Ke et al. CIFAR-100", "mg_cifar", {"depth": 11}, 20.46 * M, 0.01, 391.88 * M, 0.01),
    Row("Ke et al. CIFAR-100", "mg_cifar", {"depth": 16}, 32.58 * M, 0.01, 667.13 * M, 0.01),
    Row("Ke et al. CIFAR-100", "mg_cifar", {"depth": 21}, 44.69 * M, 0.01, 942.38 * M, 0.01),
    Row("Ke et al. CIFAR-100", "pmg", {"depth": 9}, 8.46 * M, 0.01, 186.21 * M, 0.01),
    Row("Ke et al. CIFAR-100", "pmg", {"depth": 16}, 20.6 * M, 0.01, 468.09 * M, 0.01),
    Row("Ke et al. CIFAR-100", "pmg", {"depth": 23}, 32.74 * M, 0.01, 749.98 * M, 0.01),
    Row("Ke et al. CIFAR-100", "r_pmg", {"depth": 16}, 20.6 * M, 0.01, 468.09 * M, 0.01),
    Row("Ke et al. CIFAR-100", "r_pmg", {"depth": 30}, 44.88 * M, 0.01, 1031.87 * M, 0.01),
    Row("Ke et al. CIFAR-100", "r_pmg", {"depth": 44}, 69.16 * M, 0.01, 1595.64 * M, 0.01),
)


class Measured(NamedTuple):
    row: Row
    params: int
    macs: int | None

    @property
    def params_err(self) -> float:
        return (self.params - self.row.params) / self.row.params

    @property
    def macs_err(self) -> float | None:
        return None if self.macs is None or self.row.macs is None else (self.macs - self.row.macs) / self.row.macs

    @property
    def ok(self) -> bool:
        if self.row.tol is not None and abs(self.params_err) > self.row.tol:
            return False
        return self.row.macs_tol is None or (self.macs_err is not None and abs(self.macs_err) <= self.row.macs_tol)


def command(row: Row) -> str:
    args = "".join(f" -a {k}={v}" for k, v in row.kwargs.items())
    return f"mgnas count {row.model}{args}" + (f" --input {row.input}" if row.input else "") + " --totals"


def measure(row: Row, with_macs: bool = True, device: str = "meta") -> Measured:
    import torch

    from mgnas.models import build_model, model_spec
    from mgnas.profile import count

    spec = model_spec(row.model, **row.kwargs)
    with torch.device(device):  # "meta": exact shapes and counts without allocating 90M weights
        model = build_model(spec)
    params = sum(p.numel() for p in model.parameters())
    macs = None
    if with_macs:
        size = row.input or "x".join(map(str, spec.input_size))
        macs = count(model, size, per_layer=False).macs
    return Measured(row, params, macs)


def _fmt(n: float | None) -> str:
    if n is None:
        return "–"
    for unit, scale in (("G", G), ("M", M), ("k", K)):
        if n >= scale:
            return f"{n / scale:,.2f}{unit}" if unit != "k" else f"{n / scale:,.0f}k"
    return f"{n:,.0f}"


def markdown(results: list[Measured]) -> str:
    lines = [
        "| source | model | arguments | paper params | mgnas params | Δ | tolerance "
        "| paper MACs | mgnas MACs | Δ | command |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        args = ", ".join(f"{k}={v}" for k, v in r.row.kwargs.items()) or "–"
        tol = "report" if r.row.tol is None else f"±{r.row.tol:.1%}"
        merr = "–" if r.macs_err is None else f"{r.macs_err:+.1%}"
        mark = "" if r.ok else " ✗"
        lines.append(
            f"| {r.row.source} | `{r.row.model}` | {args} | {_fmt(r.row.params)} | {r.params:,} | "
            f"{r.params_err:+.2%}{mark} | {tol} | {_fmt(r.row.macs)} | {_fmt(r.macs)} | {merr} | `{command(r.row)}` |"
        )
    return "\n".join(lines)


BEGIN, END = "<!-- paper-table:begin -->", "<!-- paper-table:end -->"


def write_readme(table: str, path: Path = HERE / "README.md") -> None:
    text = path.read_text() if path.exists() else f"# experiments\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: f"{BEGIN}\n{table}\n{END}", text, flags=re.S)
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="regenerate the table in experiments/README.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if a toleranced row is out of tolerance")
    parser.add_argument("--no-macs", action="store_true", help="count parameters only (faster)")
    parser.add_argument("--model", help="only rows of this model")
    args = parser.parse_args(argv)
    rows = [r for r in ROWS if args.model in (None, r.model)]
    try:
        from rich.progress import track
    except ImportError:  # pragma: no cover
        def track(x: Any, **_: Any) -> Any:
            return x
    results = [measure(r, not args.no_macs) for r in track(rows, description="counting", transient=True)]
    table = markdown(results)
    print(table)
    if args.write:
        write_readme(table)
    bad = [r for r in results if not r.ok]
    if bad:
        print(f"\n{len(bad)} row(s) out of tolerance: " + ", ".join(command(r.row) for r in bad), file=sys.stderr)
    return 1 if (args.check and bad) else 0


if __name__ == "__main__":
    raise SystemExit(main())
