"""offeropt: customer-first weekly offer assignment under budgets, caps and privacy rules."""

__version__ = "0.1.0"
