"""Architecture specs: what a network *is*, as versioned, validated, content-hashed JSON.

Standard library only: importing this package never imports torch.
"""

from ._arch import FORMAT, ArchSpec, validate
from ._conv import CONV_KINDS, ConvSpec, divisors, is_conv
from ._errors import SpecError
from ._io import dumps, load, loads, save
from ._path import label_to_path, layer_name, legacy_label, path_to_label
from ._reader import BlockReader

__all__ = [
    "FORMAT", "CONV_KINDS", "ArchSpec", "ConvSpec", "SpecError", "BlockReader",
    "load", "save", "loads", "dumps", "validate", "is_conv", "divisors", "label_to_path", "path_to_label",
    "layer_name", "legacy_label",
]
