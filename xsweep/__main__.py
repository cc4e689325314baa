import sys

from xsweep.cli import main

sys.exit(main())
