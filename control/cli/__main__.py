"""`python -m flowforge.control.cli`, the same as the `flowforge` script."""

from . import main

main()
