import sys

from greenheart.cli import main

sys.exit(main())
