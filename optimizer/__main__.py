"""``python -m optimizer``: the same as the ``offeropt`` command."""
from optimizer.cli import entry

entry()
