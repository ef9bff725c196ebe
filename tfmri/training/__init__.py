"""Training: the resumable epoch loop, its callbacks and its checkpoints."""
