"""The ground truth of a space and the fidelity of every search signal measured against it.

`sample`: a stratified sample of canonical genomes; `truth`: the truth recipe and its JSONL table (pure Python, no
Ray: `nas.truth_run` trains it as Ray trials); `metrics` (to come): rank correlations with bootstrap intervals,
within-FLOPs-bin tau and the seed ceiling.
"""
