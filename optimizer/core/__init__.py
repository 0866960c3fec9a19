"""The foundation every stage shares: errors, table schemas, the scenario, numerics, allocator settings.

Imports nothing else of ``optimizer``."""
