"""What an operator needs to see inside a running server and act on it: metrics, health, admin commands, logs."""
