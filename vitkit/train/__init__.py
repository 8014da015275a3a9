"""Training, evaluation and prediction: the loop, its optimiser, metrics and the run folder."""
