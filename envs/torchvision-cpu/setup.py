"""The torchvision CPU shim, loaded at every interpreter start of the main venv.

On a CPU torch the registry's torchvision (a CUDA build) fails at import ("operator torchvision::nms
does not exist"), and with it ``from transformers import Qwen2_5_VLForConditionalGeneration``, so a
checkpoint would only load after ``veripo.media.torchvision_cpu.apply()``. The vLLM venv gets the fix as
three files copied into site-packages (scripts/setup_vllm_env.sh); this package installs the same three
files into the main venv, so plain transformers loads a checkpoint there too. The .pth file costs
nothing at start-up: its hook imports torch only when something imports torchvision.

The files are the project's own, copied at build time (one source each): a change reaches the venv on
the next ``pip install -r requirements.txt``.
"""
import os
import tempfile

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# name in site-packages -> the project's file
FILES = {"veripo_torchvision_cpu.py": "veripo/media/torchvision_cpu.py",
         "veripo_torchvision_hook.py": "envs/vllm-cpu/veripo_torchvision_hook.py",
         "veripo_torchvision_cpu.pth": "envs/vllm-cpu/veripo_torchvision_cpu.pth"}


class BuildWithHook(build_py):
    """The files come from elsewhere in the checkout (setuptools takes modules from the setup.py folder
    only), the .pth file among them."""

    def run(self):
        self.mkpath(self.build_lib)
        for name, path in FILES.items():
            self.copy_file(os.path.join(ROOT, path), os.path.join(self.build_lib, name))

    def get_source_files(self):
        return []


# py_modules: declared so that the install step copies the build folder
setup(py_modules=[f[:-3] for f in FILES if f.endswith(".py")], cmdclass={"build_py": BuildWithHook},
      # pip builds in the source folder: a build/ there would be left in the checkout
      options={"build": {"build_base": tempfile.mkdtemp(prefix="veripo-torchvision-cpu-")}})
