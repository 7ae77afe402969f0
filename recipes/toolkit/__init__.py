"""Task-agnostic recipe toolkit: run infrastructure, speech data, CTC and framewise training."""
