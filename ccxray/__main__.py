"""``python -m ccxray`` (and ``python3 ccxray.pyz``): the only entry point that prints or exits."""

import sys

from .cli import main
from .launch import exit_like

if __name__ == "__main__":
    exit_like(main(sys.argv[1:]))
