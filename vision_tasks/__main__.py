"""``python -m vision_tasks ...`` is ``vision-tasks ...`` (what torchrun starts: ``torchrun
--nproc_per_node N -m vision_tasks train CONFIG --out RUN``)."""

import sys

from vision_tasks.cli import main

sys.exit(main())
