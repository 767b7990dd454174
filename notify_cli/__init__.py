"""The ``notify`` command: one entry point for the stack, topics, sending, reading and benchmarks."""
