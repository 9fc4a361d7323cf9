"""The trainer: plain Python on transformers / peft / accelerate, no Django, so a GPU
worker runs it as a child program and anyone can run it alone:

    python -m training.trainer --help
    python -m training.trainer CONFIG.json
    accelerate launch --num_processes N -m training.trainer CONFIG.json

Nothing is imported here: the web process reads `config` without loading the rest, and torch and transformers
are imported inside the functions that need them.
"""
