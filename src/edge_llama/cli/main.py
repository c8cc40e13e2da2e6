"""`edge-llama`: one entry point, one module per subcommand.

Exit codes: 0 success, 1 unexpected failure, 2 bad usage or bad input (the message says which).
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import demo, devices, evaluate, export, info, quantize

SUBCOMMANDS = (quantize, evaluate, demo, export, info, devices)

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-llama",
        description="Llama models shaped for phone and laptop NPUs: quantize, evaluate, run and export them.",
        epilog="Run 'edge-llama COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        sub = module.add_parser(commands)
        verbosity = sub.add_mutually_exclusive_group()
        verbosity.add_argument("-v", "--verbose", action="store_true", help="Log details; show tracebacks on errors.")
        verbosity.add_argument("-q", "--quiet", action="store_true", help="Print only the result.")
        sub.set_defaults(run=module.run)
    return parser


def _version() -> str:
    from edge_llama import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
        format="%(message)s",
    )
    if not args.verbose:
        _quiet_libraries(progress_bars=not args.quiet)
    from edge_llama.errors import EdgeLlamaError

    try:
        return args.run(args) or EXIT_OK
    except EdgeLlamaError as error:
        if args.verbose:
            raise
        print(f"edge-llama {args.command}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"edge-llama {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - one clear line unless --verbose
        if args.verbose:
            raise
        print(f"edge-llama {args.command}: {type(error).__name__}: {error} (run with --verbose for details)", file=sys.stderr)
        return EXIT_FAILURE


def _quiet_libraries(progress_bars: bool) -> None:
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if not progress_bars:
        hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


if __name__ == "__main__":
    sys.exit(main())
