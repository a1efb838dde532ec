import sys

from cvh_camera.cli import main

sys.exit(main())
