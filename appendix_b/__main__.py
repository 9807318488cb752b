import sys

from appendix_b.diagnose import main

sys.exit(main())
