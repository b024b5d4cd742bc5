"""``python -m drdd_edu.train ARGS`` = ``drdd-edu train ARGS``."""

import sys

from ..train_cli import main

sys.exit(main(["train", *sys.argv[1:]]))
