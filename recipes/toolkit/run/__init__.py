"""Run infrastructure: trainer, resume, preemption, atomic I/O, DDP launch, run records."""
