"""Cluster mode: many servers as one chat, sharing their state through Valkey/Redis."""
