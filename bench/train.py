"""Fine-tuning throughput: our trainer against a plain transformers Trainer + peft LoRA script and TRL's SFTTrainer.

    .venv/bin/python bench/train.py                      # CPU: a small Llama-shaped model, 20 steps each
    .venv/bin/python bench/train.py --size 0.5b --steps 40 --batch-size 8 --max-seq-length 2048   # a GPU

All fine-tune the same random-init Llama-shaped model (built here, nothing downloaded) with LoRA
(rank 16, all linear layers) on the same conversations of realistically spread lengths, with the
same batch size, accumulation, sequence length, learning rate, precision and attention (--attn, SDPA
by default). The runs:

- baseline: the usual plain script: the chat template tokenised whole, padded to the longest in each
  batch, loss on every token, `Trainer` with `DataCollator`-style padding;
- trl: TRL's `SFTTrainer` with `assistant_only_loss` (the model's ChatML template with TRL's
  `{% generation %}` markers around what an assistant turn trains on: its text and `<|im_end|>`, as ours),
  padded batches, gradient checkpointing off (TRL turns it on by default; ours has it off);
- trl-padding-free: the same with `padding_free` (the batch flattened into one row); TRL refuses it with
  `max_length` unless packing, so it gets the conversations tokenised and cut to the sequence length;
- trl-packing: the same with `packing` (best-fit decreasing, padding-free), as many packed rows per
  micro-batch as hold about the tokens of `--batch-size` conversations;
- ours: `training.trainer.loop.train`, which packs without padding and trains on the assistant tokens only.

Each runs in a child process of its own (so peak memory is its own). After `--warmup` steps, it
counts trained tokens per second (assistant tokens that carry loss, the same tokens in every run: the
baseline trains on more, but these are the ones that count), real (non-pad) tokens per second, the
peak memory (GPU allocator on CUDA, else the child's peak RSS), and MFU = 4 x parameters x real
tokens/s / peak FLOP/s (LoRA: forward and input gradients, no weight gradients for the frozen base),
when the peak is known (--peak-tflops, or an H100/H200). A TRL run that cannot run here is listed
with the reason.
"""

import argparse
import json
import math
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

SIZES = {
    # hidden, layers, heads, kv heads, intermediate, model vocabulary
    "tiny": (64, 2, 4, 2, 128, 512),
    "small": (256, 4, 4, 2, 688, 32_000),
    "0.5b": (896, 24, 14, 2, 4864, 151_936),  # the shape of Qwen2.5-0.5B, as a Llama
}
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}  # dense bf16
WORDS = [
    "the",
    "invoice",
    "refund",
    "customer",
    "order",
    "account",
    "please",
    "thanks",
    "query",
    "table",
    "select",
    "join",
    "where",
    "total",
    "payment",
    "shipping",
    "address",
    "update",
    "error",
    "retry",
    "timeout",
    "model",
    "answer",
    "question",
    "summary",
    "report",
    "data",
    "value",
    "date",
]


RUNS = ("baseline", "trl", "trl-padding-free", "trl-packing", "ours")
TRL_RUNS = ("trl", "trl-padding-free", "trl-packing")
# The demo model's ChatML template (training/trainer/demo_model.py, without tools) with TRL's generation markers
# around what an assistant turn trains on in ours too: its text and the closing <|im_end|>, not the newline after.
TRL_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}{{- '\\n' }}"
    "{%- else %}{{- message['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def main() -> None:
    args = _parse_args()
    if args.child:
        print("RESULT " + json.dumps(_child(args)), flush=True)
        return
    work = Path(tempfile.mkdtemp(prefix="logtune-bench-train-"))
    model = _build_model(work / "model", args.size)
    data = _write_data(work / "data.jsonl", args.examples, args.max_seq_length, args.seed)
    print(f"Model {args.size} in {model}; {args.examples} conversations in {data}")
    results = {}
    for which in RUNS:
        reason = _cannot_run(which, args.attn)
        if reason:
            results[which] = {"not_run": reason}
            continue
        print(f"Running {which} ({args.steps} steps)...", flush=True)
        command = [sys.executable, __file__, "--child", which, "--model", str(model), "--data", str(data),
                   "--out", str(work / which), *_shared_flags(args)]  # fmt: skip
        run = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
        if run.returncode == 0 and lines:
            results[which] = json.loads(lines[-1][len("RESULT ") :])
        elif which in TRL_RUNS:  # listed with its error rather than ending the comparison
            results[which] = {"not_run": "failed: " + (run.stderr.strip().splitlines() or ["no output"])[-1]}
        else:
            raise SystemExit(f"{which} failed:\n{run.stderr[-3000:]}")
    _print(results, args)


def _cannot_run(which: str, attn: str) -> str | None:
    """Why a run cannot run in this environment, or None."""
    import importlib.util

    if which in TRL_RUNS and importlib.util.find_spec("trl") is None:
        return "trl is not installed (pip install trl datasets)"
    if which in ("trl-padding-free", "trl-packing") and not attn.startswith("flash_attention"):
        # TRL documents padding-free for FlashAttention only; transformers 5 also honours the sequence
        # boundaries under SDPA/eager, deriving a block-diagonal mask from the position ids.
        from transformers import masking_utils

        if not hasattr(masking_utils, "find_packed_sequence_indices"):
            return f"padding_free needs flash-attention (this transformers ignores sequence boundaries under {attn})"
    return None


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--accumulation", type=int, default=2)
    parser.add_argument("--max-seq-length", type=int, default=1024)
    parser.add_argument("--examples", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--attn", choices=["sdpa", "flash_attention_2", "flash_attention_3"], default="sdpa",
                        help="attention of every run (flash_attention_* need flash-attn and a GPU)")  # fmt: skip
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak FLOP/s of the device, for MFU")
    parser.add_argument("--child", choices=RUNS, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args()


def _shared_flags(args: argparse.Namespace) -> list[str]:
    return ["--steps", str(args.steps), "--warmup", str(args.warmup), "--batch-size", str(args.batch_size),
            "--accumulation", str(args.accumulation), "--max-seq-length", str(args.max_seq_length),
            "--seed", str(args.seed), "--attn", args.attn]  # fmt: skip


# --- the model and the data -------------------------------------------------------------------------


def _build_model(folder: Path, size: str) -> Path:
    from training.trainer.demo_model import DemoSize, build_demo_model

    hidden, layers, heads, kv_heads, intermediate, vocab = SIZES[size]
    shape = DemoSize(hidden_size=hidden, layers=layers, heads=heads, kv_heads=kv_heads,
                     intermediate_size=intermediate, vocab_size=512, model_vocab_size=vocab,
                     max_positions=8192, initializer_range=0.02)  # fmt: skip
    return build_demo_model(folder, size=shape)


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(max(1, words)))


def _write_data(path: Path, count: int, max_len: int, seed: int) -> Path:
    """Conversations as products log them: long prompts (context pasted in), shorter answers, a third
    with several turns; lengths log-normal, so most are short and a few fill the sequence."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(count):
            messages = [{"role": "system", "content": "You are a support assistant. Answer precisely."}]
            for _turn in range(rng.choice((1, 1, 2, 3))):
                prompt_words = min(int(rng.lognormvariate(4.2, 0.9)), max_len // 3)
                answer_words = min(int(rng.lognormvariate(3.4, 0.8)), max_len // 6)
                messages.append({"role": "user", "content": _sentence(rng, prompt_words)})
                messages.append({"role": "assistant", "content": _sentence(rng, answer_words)})
            handle.write(json.dumps({"messages": messages}) + "\n")
    return path


# --- the runs --------------------------------------------------------------------------------------


def _child(args: argparse.Namespace) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    if args.child == "ours":
        result = _ours(args)
    elif args.child == "baseline":
        result = _baseline(args)
    else:
        result = _trl(args)
    if cuda:
        result["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["device"] = torch.cuda.get_device_name()
    else:
        result["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["device"] = "cpu"
    return result


def _ours(args: argparse.Namespace) -> dict:
    from training.trainer.config import TrainConfig
    from training.trainer.loop import train

    config = TrainConfig(
        model=args.model, data_path=args.data, output_dir=args.out, method="lora", learning_rate=2e-4,
        batch_size=args.batch_size, gradient_accumulation=args.accumulation, max_seq_length=args.max_seq_length,
        max_steps=args.steps, seed=args.seed, lora_dropout=0.0, eval_every_steps=0, checkpoint_every_steps=0,
        eval_generations=0, per_example_losses=False, warmup_ratio=0.03, attn_implementation=args.attn,
    )  # fmt: skip
    result = train(config)
    events = [json.loads(line) for line in (Path(args.out) / "events.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["type"] == "step"]
    start = next(e for e in events if e["type"] == "start")
    measured = steps[args.warmup :]
    seconds = measured[-1]["elapsed_s"] - steps[args.warmup - 1]["elapsed_s"]
    return {
        "tokens_per_second": sum(e["tokens"] for e in measured) / seconds,
        "trained_tokens_per_second": sum(e["trained_tokens"] for e in measured) / seconds,
        "trained_tokens_per_step": sum(e["trained_tokens"] for e in steps) / len(steps),
        "steps": len(steps),
        "first_loss": result.losses[0],
        "final_loss": result.losses[-1],
        "params": start["total_params"] - start["trainable_params"],
        "trained_share": start["trained_tokens_train"] / start["tokens_train"],
    }


def _baseline(args: argparse.Namespace) -> dict:
    import torch
    from peft import get_peft_model
    from transformers import AutoTokenizer, Trainer, TrainingArguments

    cuda = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    _kept, dataset = _encode_with_masks(tokenizer, _rows(args.data), args.max_seq_length)
    model = get_peft_model(_load_model(args), _lora())
    pad_id = tokenizer.pad_token_id

    def collate(batch: list[dict]) -> dict:
        longest = max(len(item["input_ids"]) for item in batch)
        ids = [item["input_ids"] + [pad_id] * (longest - len(item["input_ids"])) for item in batch]
        mask = [[1] * len(item["input_ids"]) + [0] * (longest - len(item["input_ids"])) for item in batch]
        labels = [
            [t if m else -100 for t, m in zip(row, row_mask, strict=True)]
            for row, row_mask in zip(ids, mask, strict=True)
        ]
        # Not a model input: the forward hook takes it out and counts the assistant tokens with it.
        assistant = [item["assistant_masks"] + [0] * (longest - len(item["assistant_masks"])) for item in batch]
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "labels": torch.tensor(labels),
                "assistant_masks": torch.tensor(assistant)}  # fmt: skip

    training_args = TrainingArguments(
        output_dir=args.out, per_device_train_batch_size=args.batch_size, remove_unused_columns=False,
        **_trainer_settings(args, cuda),
    )  # fmt: skip
    counter = _TokenCounter(cuda)
    trainer = Trainer(model=model, args=training_args, train_dataset=dataset, data_collator=collate,
                      callbacks=[counter.callback()])  # fmt: skip
    counter.attach(trainer.model)
    output = trainer.train()
    return {**counter.result(trainer, output, args.warmup), "trained_share": 1.0}


def _trl(args: argparse.Namespace) -> dict:
    """TRL's SFTTrainer as its documentation sets it up for conversations, in the variant `args.child` names."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    rows, encoded = _encode_with_masks(tokenizer, _rows(args.data), args.max_seq_length)
    options: dict = {"max_length": args.max_seq_length, "assistant_only_loss": True}
    batch_size = args.batch_size
    dataset = Dataset.from_list(rows)
    if args.child == "trl-padding-free":
        # TRL refuses padding_free with max_length (it would not cut), so the conversations come tokenised and
        # cut; the assistant_masks column makes the labels as assistant_only_loss does.
        dataset = Dataset.from_list(encoded)
        options = {"max_length": None, "padding_free": True}
    elif args.child == "trl-packing":
        # About the tokens of `batch_size` conversations in each micro-batch, as the other runs have.
        mean = sum(len(row["input_ids"]) for row in encoded) / len(encoded)
        batch_size = max(1, round(args.batch_size * mean / args.max_seq_length))
        options = {**options, "packing": True}
    tokenizer.chat_template = TRL_CHAT_TEMPLATE
    config = SFTConfig(
        output_dir=args.out, per_device_train_batch_size=batch_size, gradient_checkpointing=False,
        dataset_num_proc=None, **options, **_trainer_settings(args, cuda),
    )  # fmt: skip
    counter = _TokenCounter(cuda)
    trainer = SFTTrainer(model=_load_model(args), args=config, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=_lora(), callbacks=[counter.callback()])  # fmt: skip
    counter.attach(trainer.model)
    output = trainer.train()
    trained = sum(sum(row["assistant_masks"]) for row in encoded)
    total = sum(len(row["input_ids"]) for row in encoded)
    return {**counter.result(trainer, output, args.warmup), "trained_share": trained / total,
            "micro_batch_rows": batch_size}  # fmt: skip


def _rows(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _encode_with_masks(tokenizer: Any, rows: list[dict], max_length: int) -> tuple[list[dict], list[dict]]:
    """The conversations that keep an assistant token within `max_length` (ours and TRL drop the others), and
    their input_ids (the model's own template) and assistant masks (TRL's marked copy of it), cut to
    `max_length`, after checking that both templates render every conversation to the same text."""
    kept, encoded = [], []
    for row in rows:
        text = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        if tokenizer.apply_chat_template(row["messages"], tokenize=False, chat_template=TRL_CHAT_TEMPLATE) != text:
            raise SystemExit("TRL_CHAT_TEMPLATE renders a conversation differently from the model's template")
        encoding = tokenizer.apply_chat_template(row["messages"], chat_template=TRL_CHAT_TEMPLATE, tokenize=True,
                                                 return_dict=True, return_assistant_tokens_mask=True)  # fmt: skip
        ids, mask = list(encoding["input_ids"])[:max_length], list(encoding["assistant_masks"])[:max_length]
        if any(mask[1:]):
            kept.append(row)
            encoded.append({"input_ids": ids, "assistant_masks": mask})
    return kept, encoded


def _load_model(args: argparse.Namespace) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype, attn_implementation=args.attn)


def _lora() -> Any:
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def _trainer_settings(args: argparse.Namespace, cuda: bool) -> dict:
    """What the plain Trainer and TRL runs share with ours: steps, schedule, precision, seed."""
    return {
        "gradient_accumulation_steps": args.accumulation, "max_steps": args.steps, "learning_rate": 2e-4,
        "lr_scheduler_type": "cosine", "warmup_steps": 0.03, "logging_steps": 1, "save_strategy": "no",
        "report_to": [], "bf16": cuda, "seed": args.seed, "dataloader_num_workers": 0, "disable_tqdm": True,
    }  # fmt: skip


class _TokenCounter:
    """Counts, at each forward, the real tokens and the assistant tokens that carry loss, and marks the time and
    counts at the end of every optimizer step."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.real = self.trained = 0
        self.marks: list[tuple[float, int, int]] = []

    def attach(self, model: Any) -> None:
        model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, _module: object, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        ids, mask = kwargs["input_ids"], kwargs.get("attention_mask")
        self.real += int(mask.sum()) if mask is not None else ids.numel()
        assistant = kwargs.pop("assistant_masks", None)
        if assistant is not None:  # the plain script: every token has a label, the assistant ones are counted
            self.trained += int(assistant[..., 1:].sum())
        else:  # TRL: labels are -100 except on the assistant tokens (position 0 predicts nothing)
            self.trained += int((kwargs["labels"][..., 1:] != -100).sum())
        return args, kwargs

    def callback(self) -> Any:
        import torch
        from transformers import TrainerCallback

        counter = self

        class Timer(TrainerCallback):
            def on_step_end(self, *_args: object, **_kwargs: object) -> None:
                if counter.cuda:
                    torch.cuda.synchronize()
                counter.marks.append((time.perf_counter(), counter.real, counter.trained))

        return Timer()

    def result(self, trainer: Any, output: Any, warmup: int) -> dict:
        (t0, real0, trained0), (t1, real1, trained1) = self.marks[warmup - 1], self.marks[-1]
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        base = trainer.model.get_base_model()
        return {
            "tokens_per_second": (real1 - real0) / (t1 - t0),
            "trained_tokens_per_second": (trained1 - trained0) / (t1 - t0),
            "trained_tokens_per_step": trained1 / len(self.marks),
            "steps": output.global_step,
            "first_loss": losses[0] if losses else math.nan,
            "final_loss": losses[-1] if losses else math.nan,
            "params": sum(p.numel() for p in base.parameters() if not p.requires_grad),
        }


# --- the table --------------------------------------------------------------------------------------


def _print(results: dict, args: argparse.Namespace) -> None:
    ran = {name: run for name, run in results.items() if "not_run" not in run}
    ours = ran["ours"]
    device = ours["device"]
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in device), None)

    def mfu(run: dict) -> str:
        if peak is None:
            return "n/a"
        return f"{4 * run['params'] * run['tokens_per_second'] / (peak * 1e12):.1%}"

    rows = [
        ("steps (warm-up skipped)", lambda r: f"{r['steps']} ({args.warmup})"),
        ("trained tokens/s", lambda r: f"{r['trained_tokens_per_second']:,.0f}"),
        ("real tokens/s", lambda r: f"{r['tokens_per_second']:,.0f}"),
        ("peak memory MB", lambda r: f"{r['peak_memory_mb']:,.0f}"),
        ("MFU", mfu),
        ("trained tokens per step", lambda r: f"{r['trained_tokens_per_step']:,.0f}"),
        ("tokens with loss", lambda r: f"{r['trained_share']:.0%}"),
        ("first / last loss", lambda r: f"{r['first_loss']:.2f} / {r['final_loss']:.2f}"),
    ]
    print(f"\n  device {device}, model {args.size}, attention {args.attn}")
    print(f"  {'':<26}" + "".join(f"{name:>18}" for name in ran))
    for label, cell in rows:
        print(f"  {label:<26}" + "".join(f"{cell(run):>18}" for run in ran.values()))
    print()
    for name, run in ran.items():
        if name != "ours":
            ratio = ours["trained_tokens_per_second"] / run["trained_tokens_per_second"]
            memory = ours["peak_memory_mb"] / run["peak_memory_mb"]
            print(f"  ours / {name}: {ratio:.2f}x trained tokens/s, {memory:.2f}x peak memory")
    for name, run in results.items():
        if "not_run" in run:
            print(f"  {name}: not run: {run['not_run']}")
    if "trl-packing" in ran:
        print(f"  trl-packing: {ran['trl-packing']['micro_batch_rows']} packed row(s) of {args.max_seq_length} "
              "tokens per micro-batch")  # fmt: skip
    if any(run["steps"] != args.steps for run in ran.values()):
        print(f"  STEP COUNTS DIFFER (asked for {args.steps}): the comparison is not like for like")
    print(f"  batch {args.batch_size} x accumulation {args.accumulation}, max_seq_length {args.max_seq_length}\n")


if __name__ == "__main__":
    main()
