"""``python -m gmvae_cv.cli``: the same as the ``gmvae-cv`` script."""

import sys

from .main import main

sys.exit(main())
