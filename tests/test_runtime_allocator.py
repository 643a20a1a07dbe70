"""mgnas.runtime's allocator policy: ``import mgnas`` asks torch for huge pages on large CPU tensors, before torch
is imported, and leaves a user's own setting alone."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = ("import os, sys, mgnas; from mgnas.runtime import configure_allocator; "
         "print(os.environ.get('THP_MEM_ALLOC_ENABLE'), 'torch' in sys.modules, configure_allocator())")


def _probe(env_value: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if env_value is not None:
        env["THP_MEM_ALLOC_ENABLE"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_import_mgnas_sets_the_policy_before_torch():
    # set, torch not imported by `import mgnas`, so the setting takes effect when torch comes
    assert _probe(None) == ["1", "False", "True"]


def test_a_users_setting_wins():
    assert _probe("0") == ["0", "False", "True"]


def test_too_late_once_torch_is_imported():
    code = "import torch; from mgnas.runtime import configure_allocator; print(configure_allocator())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
