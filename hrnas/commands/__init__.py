"""One module per `hrnas` subcommand, each with `build_parser()` and `main(argv) -> exit code`."""
