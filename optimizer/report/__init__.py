"""What planners read: the run report, the comparison of runs, charts, output tables."""
