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


def add_architecture_arguments(parser, required: bool = True) -> None:
    """The `--arch` and repeatable `--gene NAME=VALUE` options every command-line tool shares."""
    parser.add_argument("--arch", required=required, help=f"preset ({', '.join(PRESETS)}) or genome YAML/JSON file")
    parser.add_argument(
        "--gene",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one gene (repeatable); VALUE is YAML, e.g. kernels=[4,4,2,1], or per stage with / between "
        "stages, e.g. block=shuffle/weighting/weighting",
    )


def architecture_from_args(args) -> Genome:
    """The genome named by --arch with every --gene override applied (raises GenomeError / ValueError)."""
    from search_space.genome import parse_gene_override

    return load_architecture(args.arch).with_genes(dict(parse_gene_override(g) for g in args.gene))
