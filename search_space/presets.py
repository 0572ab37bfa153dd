"""Presets are genome YAML files in `presets/`, nothing more."""

from __future__ import annotations

from pathlib import Path

from search_space.genome import Genome

PRESET_DIR = Path(__file__).parent / "presets"
PRESETS: tuple[str, ...] = tuple(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))


def load_preset(name: str) -> Genome:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return Genome.from_file(PRESET_DIR / f"{name}.yaml")


def load_architecture(arch: str) -> Genome:
    """A preset name, a genome YAML/JSON file, or a compact genome string (`stem=lite width=40 ...`)."""
    if arch in PRESETS:
        return load_preset(arch)
    if "=" in arch:
        return Genome.from_compact(arch)
    path = Path(arch)
    if path.suffix in {".yaml", ".yml", ".json"} or path.exists():
        return Genome.from_file(path)
    raise ValueError(f"--arch {arch!r} is neither a preset ({', '.join(PRESETS)}) nor a genome file")
