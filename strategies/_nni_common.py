"""Importing NNI 3.0 on this stack: one place for the workarounds and the "not installed" error.

- NNI's NAS package imports pytorch-lightning, which imports torchmetrics, which imports torchvision; on the CPU
  wheel of torch ``import torchvision`` fails unless mgnas registers its two missing op schemas first
  (:mod:`mgnas.data._torchvision_compat`), so that happens before NNI is imported.
- NNI 3.0 predates torch 2.13 and warns at import about classes it does not know (``torch.nn.Buffer`` ...):
  those warnings are harmless and silenced here.
"""

from __future__ import annotations

import contextlib
import warnings
from types import ModuleType

__all__ = ["NNI_REASON", "NNIUnavailable", "import_nni"]

NNI_REASON = "NNI backend: NNI 3.0 is frozen since 2023"


class NNIUnavailable(ImportError):
    """NNI (or a package its NAS part needs) is not installed."""


def import_nni(nas: bool = False) -> ModuleType:
    """Return the ``nni`` module (with ``nni.nas`` importable when ``nas``), or raise :class:`NNIUnavailable`."""
    try:
        from mgnas.data._torchvision_compat import import_torchvision

        with contextlib.suppress(ImportError):  # torchvision absent: lightning/torchmetrics import without it
            import_torchvision()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"nni\..*")
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            import nni

            if nas:
                import nni.nas.nn.pytorch  # noqa: F401  (imports pytorch-lightning and torchmetrics)
                import nni.nas.strategy  # noqa: F401
    except ImportError as err:
        raise NNIUnavailable(f"the NNI backend needs the nni extra ({err}); install it with: "
                             "pip install -c constraints.txt 'mgnas[nni]'") from err
    return nni
