"""The child a GPU worker starts for playground answers and merges, which load models:

    python -m training.trainer.call MODULE:FUNCTION CALLS.json RESULTS.json

calls MODULE.FUNCTION(**kwargs) for each kwargs of the JSON list in CALLS.json and writes the results, as a
JSON list, to RESULTS.json. A model loaded here never keeps GPU memory in the worker, which the next fine-tune
needs. The worker starts it as the leader of its own process group, with PR_SET_PDEATHSIG (SIGKILL): it dies
with the worker, and the worker kills the group when it runs out of time.

Only the standard library here, no Django: the function's module imports what it needs.
"""

import importlib
import json
import sys


def main(argv: list[str]) -> None:
    module, name = argv[0].split(":")
    function = getattr(importlib.import_module(module), name)
    with open(argv[1]) as calls:
        results = [function(**kwargs) for kwargs in json.load(calls)]
    with open(argv[2], "w") as out:
        json.dump(results, out)


if __name__ == "__main__":
    main(sys.argv[1:])
