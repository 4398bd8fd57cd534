"""``python -m dlexp.translate RUN_DIR SENTENCE... [--beam N]``: translate with a trained run's best weights
(``dlexp.tasks.translator``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from dlexp.errors import UserError


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlexp.translate",
                                     description="Translate sentences with the best weights of a translation run.")
    parser.add_argument("run_dir", type=Path, help="a run dir, e.g. outputs/2026-11-26/10-00-00-123456")
    parser.add_argument("sentences", nargs="+", help="source sentences, each one argument (quote it)")
    parser.add_argument("--beam", type=int, default=None, help="beam size (1 = greedy); default: the run's decode.beam_size")
    args = parser.parse_args(argv)
    if args.beam is not None and args.beam < 1:
        print(f"error: --beam must be >= 1, got {args.beam}", file=sys.stderr)
        return 2
    from dlexp.tasks.translator import translate  # torch: deferred, so --help answers at once

    try:
        outputs = translate(args.run_dir, args.sentences, args.beam,
                            warn=lambda line: print(f"warning: {line}", file=sys.stderr, flush=True))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for sentence, output in zip(args.sentences, outputs):
        print(f"{sentence} => {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
