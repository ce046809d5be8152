import sys

from greenheart.bench.programs import main

sys.exit(main())
