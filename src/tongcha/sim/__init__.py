"""Simulated carriers and platforms: real HTTP peers speaking the real protocols."""
