"""hrnas: architecture search and ablation of lightweight high-resolution pose networks (the `hrnas` command)."""
