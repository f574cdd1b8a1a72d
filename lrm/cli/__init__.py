"""Command-line entry points. Each sub-command lives in its own module with
`add_parser(subparsers)` and `run(args) -> int`; `main.py` lists them explicitly."""
