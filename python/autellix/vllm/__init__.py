"""Autellix inside vLLM: the V1 scheduler plug-in and the CPU-backend workarounds it needs."""
