import sys

from sglang_consumer_gpu.cli import main

sys.exit(main())
