"""The chat server: its sans-I/O rules, its host on the reactor, and the state it keeps."""
