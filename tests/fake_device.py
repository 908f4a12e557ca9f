"""A second device on a CPU-only machine, for proving that code keeps its tensors where the model is.

``OnDevice`` wraps a CPU tensor and reports a device other than the CPU (``meta``: autograd on a
pretended ``cuda`` tensor would start CUDA's own threads and abort; torch runs nothing on ``meta`` by
itself, so the wrapped CPU data does all the work); every operation on it runs on the wrapped CPU
tensor and wraps the result. An operation that mixes an ``OnDevice`` tensor with a plain CPU tensor
(anything but a 0-dim scalar, which torch itself lets cross devices) raises, as CUDA would: "expected
all tensors to be on the same device". Inside ``fake_cuda()``:

- ``torch.ones(..., device="cuda")`` and friends (``cuda`` and ``meta`` both mean the pretended device),
  ``t.to("cuda")``, ``t.cuda()`` and ``module.to("cuda")`` make ``OnDevice`` tensors; ``t.cpu()`` and
  ``t.to("cpu")`` unwrap;
- ``torch.Generator(device="cuda")`` makes a generator marked as being on the device; a sampling
  operation on device tensors with a CPU generator raises, as CUDA's multinomial does;
- ``torch.cuda.is_available()`` is True and ``torch.cuda.set_device`` does nothing.

Why not FakeTensorMode: it has no data, and the sampler and the vision scatter read values
(``bool(done.all())``, token counts); here every value is real, only the device is pretended.

Limits: models run with eager attention (SDPA picks its kernel by device); a few C++ paths that
allocate on the tensor's device without the dispatcher (``torch.where`` with a Python scalar,
``contiguous``, indexing) run on the CPU data when no gradient flows through them; CPU index tensors
pass, as CUDA accepts them.
"""
from __future__ import annotations

import contextlib

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

DEVICE = torch.device("meta")
_Generator = torch.Generator  # the real class: fake_cuda() replaces torch.Generator


class DeviceMismatch(RuntimeError):
    pass


INDEXING = {torch.ops.aten.index.Tensor, torch.ops.aten.index_put.default, torch.ops.aten.index_put_.default,
            torch.ops.aten._index_put_impl_.default}


class OnDevice(torch.Tensor):
    """A CPU tensor that reports being on the pretended device."""

    @staticmethod
    def __new__(cls, elem: torch.Tensor, requires_grad: bool | None = None):
        if isinstance(elem, OnDevice):
            elem = elem.elem
        r = torch.Tensor._make_wrapper_subclass(
            cls, elem.size(), strides=elem.stride(), storage_offset=elem.storage_offset(), dtype=elem.dtype,
            layout=elem.layout, device=DEVICE,
            requires_grad=elem.requires_grad if requires_grad is None else requires_grad)
        r.elem = elem
        return r

    __torch_function__ = torch._C._disabled_torch_function_impl

    def __repr__(self):
        return f"OnDevice({self.elem!r})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        plain: list = []

        def unwrap(x):
            if isinstance(x, OnDevice):
                return x.elem
            if isinstance(x, torch.Tensor) and x.device.type == "meta":
                # made by autograd's C++ side for the device (it materialises missing gradients as zeros)
                return torch.zeros(x.shape, dtype=x.dtype)
            if isinstance(x, torch.Tensor) and x.dim() > 0:
                plain.append(x)
            return x

        a, k = tree_map(unwrap, args), tree_map(unwrap, kwargs)
        if func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default):
            return _copy(func, args, kwargs, a, k)
        if func in INDEXING:
            # CUDA takes CPU index tensors (not values to write): only those are let through
            plain = [x for x in plain if not any(x is i for i in args[1])]
        if plain:
            raise DeviceMismatch(f"{func}: a CPU tensor of shape {tuple(plain[0].shape)} meets tensors on {DEVICE}")
        out = func(*a, **k)
        return tree_map(lambda x: OnDevice(x) if isinstance(x, torch.Tensor) else x, out)


def _copy(func, args, kwargs, a, k):
    if func is torch.ops.aten._to_copy.default:
        target = kwargs.get("device")
        k = dict(k)
        k.pop("device", None)
        out = func(*a, **k)
        if target is not None and torch.device(target).type == "cpu":
            return out
        return OnDevice(out)
    dst, src = args[0], args[1]
    if isinstance(dst, OnDevice) != isinstance(src, OnDevice) and src.dim() > 0:
        raise DeviceMismatch(f"{func}: copy between the CPU and {DEVICE} in place")
    func(*a, **k)
    return dst


class DeviceGenerator(_Generator):
    """A CPU generator standing for one on the device."""

    @property
    def device(self):  # noqa: D401
        return DEVICE


class _AnyGenerator(type(_Generator)):
    def __instancecheck__(cls, obj):
        return isinstance(obj, _Generator)


class _PatchedGenerator(_Generator, metaclass=_AnyGenerator):
    """torch.Generator inside fake_cuda(): a DeviceGenerator for the device, a real one otherwise."""

    def __new__(cls, device="cpu"):
        return DeviceGenerator() if _is_device(device) else _Generator(device)


def _bare(x):
    return x.elem if isinstance(x, OnDevice) else x


def _is_device(dev) -> bool:
    return dev is not None and torch.device(dev).type in ("cuda", "meta")


FACTORIES = {torch.ones, torch.zeros, torch.full, torch.empty, torch.arange, torch.tensor, torch.rand, torch.randn,
             torch.randint, torch.linspace, torch.eye, torch.as_tensor, torch.zeros_like, torch.ones_like,
             torch.full_like, torch.empty_like, torch.randn_like, torch.rand_like}


# reading values back to Python (a device-to-host copy on a GPU): done on the CPU data
SCALAR_READS = {torch.Tensor.tolist, torch.Tensor.item, torch.Tensor.__int__, torch.Tensor.__float__,
                torch.Tensor.__bool__, torch.Tensor.__index__, torch.Tensor.numpy}


class _FakeCudaMode(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        # (checked here: below, the dispatcher hands over the C++ generator without its Python class)
        flat = [*args, *kwargs.values()]
        if any(isinstance(x, OnDevice) for x in flat) and any(
                isinstance(x, _Generator) and not isinstance(x, DeviceGenerator) for x in flat):
            raise DeviceMismatch(f"{getattr(func, '__name__', func)}: a CPU generator samples tensors on {DEVICE}")
        if func in FACTORIES and _is_device(kwargs.get("device")):
            kwargs["device"] = "cpu"
            gen = kwargs.get("generator")
            if gen is not None and not isinstance(gen, DeviceGenerator):
                raise DeviceMismatch(f"{func.__name__}: a CPU generator for a tensor on {DEVICE}")
            with torch._C.DisableTorchFunctionSubclass():
                out = func(*tree_map(_bare, args), **kwargs)
            return OnDevice(out, requires_grad=out.requires_grad)
        if func in SCALAR_READS and isinstance(args[0], OnDevice):
            with torch._C.DisableTorchFunctionSubclass():
                return func(args[0].elem, *args[1:], **kwargs)
        if (func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__) and isinstance(args[0], OnDevice)
                and not any(isinstance(x, torch.Tensor) and x.requires_grad for x in args)):
            # torch's C++ indexing makes helper tensors on the indexed tensor's device: index the CPU
            # data instead (CUDA accepts CPU index tensors too, so they pass unchecked)
            a = tree_map(_bare, args)
            if func is torch.Tensor.__setitem__:
                value = args[2] if len(args) > 2 else None
                if isinstance(value, torch.Tensor) and not isinstance(value, OnDevice) and value.dim() > 0:
                    raise DeviceMismatch(f"index_put_: a CPU tensor of shape {tuple(value.shape)} written into {DEVICE}")
                with torch._C.DisableTorchFunctionSubclass():
                    func(*a)
                return None
            with torch._C.DisableTorchFunctionSubclass():
                out = func(*a)
            return OnDevice(out, requires_grad=out.requires_grad) if isinstance(out, torch.Tensor) else out
        if func is torch.Tensor.contiguous and isinstance(args[0], OnDevice):
            # torch's C++ contiguous() allocates on the tensor's device directly: clone through the dispatcher
            return args[0] if args[0].elem.is_contiguous() else args[0].clone(memory_format=torch.contiguous_format)
        if func in (torch.Tensor.to, torch.Tensor.cuda):
            target = _target(func, args, kwargs)
            if target is not None:
                self_ = args[0]
                dtype = kwargs.get("dtype") or next((x for x in args[1:] if isinstance(x, torch.dtype)), None)
                base = self_.elem if isinstance(self_, OnDevice) else self_
                with torch._C.DisableTorchFunctionSubclass():
                    moved = base.to(dtype) if dtype is not None else base
                if target.type in ("cuda", "meta"):
                    if isinstance(self_, OnDevice) and dtype is None:
                        return self_
                    # a new leaf: moving a tensor that needs its gradient is not something this harness supports
                    return OnDevice(moved, requires_grad=self_.requires_grad)
                if isinstance(self_, OnDevice):
                    return moved
        try:
            return func(*args, **kwargs)
        except (RuntimeError, NotImplementedError) as exc:
            # Some C++ paths allocate on the tensor's device without the dispatcher (a Python scalar
            # turned into a tensor by torch.where, ...). Without gradients, run them on the CPU data.
            flat = [*tree_flatten(args)[0], *tree_flatten(kwargs)[0]]
            if isinstance(exc, DeviceMismatch) or not any(w in str(exc) for w in ("CUDA", "cuda", "meta")):
                raise
            if any(isinstance(x, torch.Tensor) and x.requires_grad for x in flat):
                raise
            if any(isinstance(x, OnDevice) for x in flat):
                plain = [x for x in flat if isinstance(x, torch.Tensor) and not isinstance(x, OnDevice) and x.dim() > 0]
                if plain:
                    raise DeviceMismatch(f"{getattr(func, '__name__', func)}: a CPU tensor of shape "
                                         f"{tuple(plain[0].shape)} meets tensors on {DEVICE}") from None
            with torch._C.DisableTorchFunctionSubclass():
                out = func(*tree_map(_bare, args), **tree_map(_bare, kwargs))
            return tree_map(lambda x: OnDevice(x) if isinstance(x, torch.Tensor) else x, out)


def _target(func, args, kwargs):
    if func is torch.Tensor.cuda:
        return DEVICE
    cand = kwargs.get("device")
    for x in args[1:]:
        if isinstance(x, (torch.device, str)) and not isinstance(x, bool):
            cand = x
        elif isinstance(x, torch.Tensor):
            cand = x.device
    return torch.device(cand) if cand is not None else None


@contextlib.contextmanager
def fake_cuda(monkeypatch):
    """Pretend a CUDA device is there (see the module docstring)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch, "Generator", _PatchedGenerator)
    with _FakeCudaMode():
        yield DEVICE


def on_device(module: torch.nn.Module) -> torch.nn.Module:
    """Move a module's parameters and buffers onto the pretended device (outside ``fake_cuda`` too)."""
    for mod in module.modules():
        for name, p in list(mod._parameters.items()):
            if p is not None and not isinstance(p, OnDevice):
                mod._parameters[name] = torch.nn.Parameter(OnDevice(p.detach()), requires_grad=p.requires_grad)
        for name, b in list(mod._buffers.items()):
            if b is not None and not isinstance(b, OnDevice):
                mod._buffers[name] = OnDevice(b)
    return module
