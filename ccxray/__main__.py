"""``python -m ccxray``: the only entry point that prints or exits."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
