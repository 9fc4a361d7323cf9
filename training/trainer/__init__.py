"""The trainer: plain Python on transformers / peft / accelerate, no Django, so a GPU
worker runs it as a child program and anyone can run it alone:

    python -m training.trainer --help
    python -m training.trainer CONFIG.json
    accelerate launch --num_processes N -m training.trainer CONFIG.json

`config` (TrainConfig: what to train) → `data` (conversations to token ids and labels) → `schedule` (the
batches of every step) → `loop` (train(): set up, resume, step, evaluate, checkpoint, finish) over `state`
(Run, TrainState, TrainResult), on `modeling` (the model and what trains), `losses`, `checkpoints`, `evaluate`
(base against fine-tuned) and `events` (events.jsonl). `__main__` is the command line. Used by the web side's
workers too: `loss_preview`, `generate` (playground answers), `merge`, `demo_model`; the worker's child
programs `launcher` (accelerate launch, ended with the worker) and `call` (a function of this package in a
child process); and `serve` (python -m training.trainer.serve --help), a small OpenAI-compatible server with
vLLM's API for LoRA adapters, on `serve_models` (the models, one generation at a time) and `serve_api` (the
bodies).

Nothing is imported here: the web process reads `config` without loading the rest, and torch and transformers
are imported inside the functions that need them.
"""
