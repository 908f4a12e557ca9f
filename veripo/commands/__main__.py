"""``python -m veripo.commands``: the ``veripo`` command without the installed entry point (e.g. in the
vLLM venv, where the checkout is on sys.path but the package is not installed)."""
from veripo.commands import main

main(prog_name="veripo")
