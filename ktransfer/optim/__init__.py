"""Optimisation: learning-rate schedules (`schedules`) and optimizers with layer-wise rates,
L2-SP, EMA and gradient accumulation (`optimizers`)."""
