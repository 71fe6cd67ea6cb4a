"""Helpers of bench/engine_programs.py: the simulator's workloads replayed on real vLLM engines."""
