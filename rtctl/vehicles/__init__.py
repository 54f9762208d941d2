"""Composition of the car sim with the shield (action masks, shielded behaviour commands, intervention
signal), env builders per method, and policy evaluation for `rtctl train marl` / `rtctl bench marl`."""
