"""PyTorch building blocks of the HRNet family. Knows nothing about genes, Ray, Optuna or MLflow."""
