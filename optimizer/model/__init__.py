"""The assignment problem as data: eligibility of pairs and the problem's blocks, offers, caps and budgets."""
