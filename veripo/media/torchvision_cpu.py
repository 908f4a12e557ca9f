"""Make the registry's CUDA-linked torchvision wheel importable on a CPU-only torch.

On a CPU torch, torchvision's C++ extension cannot load, and its fake-op registrations for
``torchvision::nms``/``qnms`` then raise at import time, which breaks transformers' Qwen2.5-VL video
processor and qwen-vl-utils. Defining the two op schemas first lets the pure-Python parts import.
Nothing in the Qwen2.5-VL pipeline uses the C++ ops. On a GPU machine the extension loads and this
does nothing.
"""
from __future__ import annotations

import glob
import importlib.util
import os
import sys

_state: dict = {}


def apply() -> bool:
    """Define the missing op schemas if needed; returns True when it had to."""
    if "applied" in _state:
        return _state["applied"]
    _state["applied"] = False
    if "torchvision" in sys.modules:
        return False
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    import torch

    libs = []
    for loc in spec.submodule_search_locations:
        libs += glob.glob(os.path.join(loc, "_C*.so"))
    if libs:
        try:
            torch.ops.load_library(libs[0])
            return False
        except (OSError, ImportError, RuntimeError):
            pass
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for name in ("nms", "qnms"):
        try:
            lib.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        except RuntimeError:
            pass
    _state["library"] = lib  # the Library object must stay alive for the schemas to stay defined
    _state["applied"] = True
    return True
