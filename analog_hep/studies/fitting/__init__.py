"""Fitting device cards to measured pulse-response data (over the device-model registry)."""
