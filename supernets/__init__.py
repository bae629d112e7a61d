"""Weight-sharing supernets (Flax NNX) and their fast layers."""
