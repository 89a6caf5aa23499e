"""``python -m app`` is the ``ccactors`` command."""

from ._cli import main

main()
