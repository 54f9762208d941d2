"""Multi-car 1/10-scale driving sim: vectorised kinematic-bicycle plant, scenarios with scripted human
traffic, V2V/perception tables, the policy observation, and a PettingZoo ParallelEnv (`env.py`).

Imports numpy, gymnasium and pettingzoo only; the shield (action masks, shielded commands) is injected
by the caller (`rtctl.vehicles` composes them), so `rtctl.sim` stays independent of `rtctl.safety`.
"""
