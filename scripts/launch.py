"""`python scripts/launch.py ...` = `python -m veripo.train.launch ...` from a checkout (see veripo/train/launch.py)."""
import _bootstrap  # noqa: F401

from veripo.train.launch import main

if __name__ == "__main__":
    main()
