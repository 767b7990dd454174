"""Channel delivery: one worker framework, four provider adapters."""
