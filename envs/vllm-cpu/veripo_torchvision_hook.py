"""Make torchvision importable in every process of the vLLM venv (loaded by veripo_torchvision_cpu.pth).

The registry's torchvision wheel is CUDA-linked, and vLLM imports it in processes our code never runs
in (engine core, workers), before any veripo module could call ``veripo.media.torchvision_cpu.apply``.
So site runs this at every interpreter start: it waits for the first ``import torchvision`` (torch
is not imported before that) and then applies the project's shim, copied beside it as
``veripo_torchvision_cpu.py`` by scripts/setup_vllm_env.sh.
"""
import sys


class _TorchvisionCPUHook:
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)
        import veripo_torchvision_cpu

        veripo_torchvision_cpu.apply()
        return None  # the ordinary finders import torchvision itself


sys.meta_path.insert(0, _TorchvisionCPUHook())
