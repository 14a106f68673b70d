"""Model code behind Protocols: one module per implementation, heavy imports inside."""
