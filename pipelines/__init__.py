"""Composition only: which operators, in what order, on what resources."""
