"""Point-in-time features and the models that predict each pair's redemption and value and each customer's lifetime value."""
