"""Genes, genomes, presets, complexity conventions and budgets. Never imports Ray or MLflow."""
