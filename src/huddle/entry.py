"""The `huddle` console script: dispatches `huddle hook …` before importing anything heavy.

Claude Code runs the command hook on every tool call, so `huddle hook` must not pay for the CLI's
imports (argparse tables, httpx, settings); everything else goes to `huddle.cli.main`.
"""

from __future__ import annotations

import sys


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["hook"]:
        from huddle.hook import main as hook_main  # stdlib only: the fast path

        return hook_main(argv[1:])
    from huddle.cli.main import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
