"""Sampling rules, settings and beam search: numpy only, no model knowledge."""
