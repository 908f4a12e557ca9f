"""`python scripts/launch.py ...` = `python -m veripo.launch ...` from a checkout (see veripo/launch.py)."""
import _bootstrap  # noqa: F401

from veripo.launch import main

if __name__ == "__main__":
    main()
