"""The chat client: its sans-I/O rules, its host on the reactor, the console and line editor."""
