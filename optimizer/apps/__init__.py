"""The applications: the pipeline (the one wiring of the stages), sweep, explain, backtest and the synthetic demo data."""
