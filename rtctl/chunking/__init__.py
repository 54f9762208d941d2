"""Chunked-policy scheduling: when to infer, what state to condition on, how chunks become commands."""
