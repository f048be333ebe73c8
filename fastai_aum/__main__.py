"""`python -m fastai_aum`: the `fastai-aum` command."""
import sys

from .compare.cli import main

__all__: list[str] = []

sys.exit(main())
