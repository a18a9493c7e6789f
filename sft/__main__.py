"""``python -m sft ...`` (what ``accelerate launch -m sft train CONFIG`` runs): the ``crossling sft`` CLI."""

import sys

from crossling.cli import main

raise SystemExit(main(["sft", *sys.argv[1:]]))
