"""Catalog format docs, synthesized test media (`dummies`) and the demo catalog builder."""
