"""Task recipes built on rnnlib."""
