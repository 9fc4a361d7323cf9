import sys

from training.trainer.loop import main

if __name__ == "__main__":
    sys.exit(main())
