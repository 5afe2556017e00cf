"""The compute: its state machine, its lifecycle and its metrics."""
