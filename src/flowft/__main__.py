import sys

from flowft.cli import main

sys.exit(main())
