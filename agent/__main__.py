"""python -m fleetvisor.agent"""

import sys

from .main import main

sys.exit(main())
