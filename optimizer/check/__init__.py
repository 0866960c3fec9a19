"""``offeropt check``: the independent verifier of a run folder against the raw inputs and the scenario (every hard rule, every published figure).

Imports only ``optimizer.core`` and ``optimizer.io``, never the code that planned the run."""
