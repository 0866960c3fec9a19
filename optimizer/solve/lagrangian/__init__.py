"""The scale method: Lagrangian prices, each customer's best response (compiled kernels), repair, bounds, starting prices."""
