"""The demo catalog: three short synthesized clips and one broken upload (see README.md)."""
