import sys

from ch01_economics.cost import main

sys.exit(main())
