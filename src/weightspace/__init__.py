"""Weight-space geometry of offline reasoning training: losses, training, geometry, evaluation."""
