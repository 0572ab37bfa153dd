"""A weight-sharing supernet over a search space: the sharing rule, the supernet, extraction, calibration, scoring."""
