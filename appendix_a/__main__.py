import sys

from appendix_a.compare import main

sys.exit(main())
