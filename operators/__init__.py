"""raydub operators: one stage per module, composed by pipelines/."""
