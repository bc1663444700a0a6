"""``alpr-node``: the edge-node runtime and its tools.

Each subcommand lives in its own module and is imported only when used, so that e.g.
``alpr-node status`` does not load torch.
"""

from __future__ import annotations

import importlib
import sys

from alpr_common.cli_support import run_cli, version_line

# subcommand -> (module with a ``main(argv) -> int``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("node.runtime_cli", "run the node: cameras → detect → OCR → reads → hub (--config FILE)"),
    "status": ("node.runtime_cli", "show the self-check of a running node"),
    "shift-start": ("node.shift_cli", "start a shift: is the hot list current? (--officer ID --config FILE)"),
    "shift-end": ("node.shift_cli", "end the shift: the unit goes off shift (--officer ID)"),
    "report-damage": ("node.shift_cli", "report the unit damaged: a help-desk ticket (--officer ID --note TEXT)"),
    "hotlist-add": ("node.local_entry_cli", "enter a plate at the unit, offline too (--officer ID --reason --expires)"),
    "recognize": ("node.recognize_cli", "detect and read plates in still images (--json: one object per line)"),
    "evaluate": ("node.evaluate_cli", "measure detection/OCR accuracy on an annotated image folder"),
    "train": ("node.training.cli", "generate data and train the detector / OCR / state models"),
}

USAGE = "usage: alpr-node [--version] [--validate-config FILE] COMMAND [ARGS...]\n\ncommands:\n" + "\n".join(
    f"  {name:<14} {help_}" for name, (_, help_) in COMMANDS.items()
)


def main(argv: list[str] | None = None) -> int:
    return run_cli("alpr-node", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--version" in args[: args.index("--") if "--" in args else len(args)]:  # on every subcommand too
        print(version_line("alpr-node"))
        return 0
    if not args or args[0] in ("-h", "--help"):
        print(USAGE + "\n\n`alpr-node COMMAND --help` explains each command.")
        return 0 if args else 2
    if args[0] == "--validate-config":
        args = ["run", *args]
    name = args[0]
    if name not in COMMANDS:
        print(f"alpr-node: unknown command {name!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    module_name = COMMANDS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            print(f"alpr-node {name}: not built yet in this version", file=sys.stderr)
            return 2
        raise
    result: int = module.main(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
