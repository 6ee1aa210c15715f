"""The shared trainer: train state and optimiser, sharded steps, checkpoints, the fit loop."""
