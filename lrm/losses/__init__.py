"""Image losses and metrics shared by the trainer and `lrm evaluate`."""
