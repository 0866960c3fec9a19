"""``python -m optimizer``: the same as the ``offeropt`` command."""
from .cli import main

main()
