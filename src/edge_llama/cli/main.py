"""`edge-llama`: one entry point, one module per subcommand.

Exit codes (stable; scripts may rely on them): 0 success, 1 unexpected failure (an engine or
library error: rerun with --verbose for the traceback), 2 bad usage or bad input (a wrong flag, a
missing checkpoint, a target the checkpoint cannot go to; the one-line message says what to do),
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from . import demo, devices, evaluate, export, info, quantize

SUBCOMMANDS = (quantize, evaluate, demo, export, info, devices)

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class OneLineErrorParser(argparse.ArgumentParser):
    """Usage errors as one line that names the fix, exit code 2 (argparse prints the whole usage)."""

    subcommand_parsers: dict[str, argparse.ArgumentParser] = {}

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # blame the subcommand, whose options the suggestion should come from
            self.subcommand_parsers.get(getattr(parsed, "command", None), self).error(
                f"unrecognized arguments: {' '.join(extras)}"
            )
        return parsed

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {_with_suggestion(self, message)}; see '{self.prog} --help'\n")


def _with_suggestion(parser: argparse.ArgumentParser, message: str) -> str:
    import difflib

    prefix = "unrecognized arguments: "
    if not message.startswith(prefix):
        return message
    known = [option for action in parser._actions for option in action.option_strings]
    wrong = [word for word in message[len(prefix):].split() if word.startswith("-")]
    close = difflib.get_close_matches(wrong[0].split("=")[0], known, n=1) if wrong else []
    return f"{message} (did you mean {close[0]}?)" if close else message


class HelpFormatter(argparse.HelpFormatter):
    """Shows an option's default where it says something: not None/False, not already in the help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in help_text or action.nargs == 0:
            return help_text
        return f"{help_text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="edge-llama",
        description="Llama models shaped for phone and laptop NPUs: quantize, evaluate, run and export them.",
        epilog="Run 'edge-llama COMMAND --help' for the options of a command. Exit codes: 0 done, 1 unexpected "
        "failure (rerun with --verbose for the traceback), 2 bad usage or input (the message says what to do), "
        "130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parser.subcommand_parsers = commands.choices
    for module in SUBCOMMANDS:
        sub = module.add_parser(commands)
        sub.formatter_class = HelpFormatter
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
        return EXIT_INTERRUPTED
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
        os.environ.setdefault("TQDM_DISABLE", "1")  # every other tqdm bar that does not choose for itself
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


if __name__ == "__main__":
    sys.exit(main())
