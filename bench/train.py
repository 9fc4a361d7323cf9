"""Fine-tuning throughput: our trainer against a plain transformers Trainer + peft LoRA script.

    .venv/bin/python bench/train.py                      # CPU: a small Llama-shaped model, 20 steps each
    .venv/bin/python bench/train.py --size 0.5b --steps 40 --batch-size 8 --max-seq-length 2048   # a GPU

Both fine-tune the same random-init Llama-shaped model (built here, nothing downloaded) with LoRA
(rank 16, all linear layers) on the same conversations of realistically spread lengths, with the
same batch size, accumulation, sequence length, learning rate, precision and attention (SDPA).
The baseline is written the usual way: the chat template tokenised whole, padded to the longest
in each batch, loss on every token, `Trainer` with `DataCollator`-style padding. Ours packs without
padding and trains on the assistant tokens only.

Each runs in a child process of its own (so peak memory is its own). After `--warmup` steps, it
counts real (non-pad) tokens per second, the peak memory (GPU allocator on CUDA, else the child's
peak RSS), and MFU = 4 x parameters x tokens/s / peak FLOP/s (LoRA: forward and input gradients,
no weight gradients for the frozen base), when the peak is known (--peak-tflops, or an H100/H200).
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
    for which in ("baseline", "ours"):
        print(f"Running {which} ({args.steps} steps)...", flush=True)
        command = [sys.executable, __file__, "--child", which, "--model", str(model), "--data", str(data),
                   "--out", str(work / which), *_shared_flags(args)]  # fmt: skip
        run = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
        if run.returncode != 0 or not lines:
            raise SystemExit(f"{which} failed:\n{run.stderr[-3000:]}")
        results[which] = json.loads(lines[-1][len("RESULT ") :])
    _print(results, args)


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
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak FLOP/s of the device, for MFU")
    parser.add_argument("--child", choices=["baseline", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args()


def _shared_flags(args: argparse.Namespace) -> list[str]:
    return ["--steps", str(args.steps), "--warmup", str(args.warmup), "--batch-size", str(args.batch_size),
            "--accumulation", str(args.accumulation), "--max-seq-length", str(args.max_seq_length),
            "--seed", str(args.seed)]  # fmt: skip


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


# --- the two runs -----------------------------------------------------------------------------------


def _child(args: argparse.Namespace) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    result = _ours(args) if args.child == "ours" else _baseline(args)
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
        eval_generations=0, per_example_losses=False, warmup_ratio=0.03,
    )  # fmt: skip
    result = train(config)
    events = [json.loads(line) for line in (Path(args.out) / "events.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["type"] == "step"]
    start = next(e for e in events if e["type"] == "start")
    measured = steps[args.warmup :]
    seconds = measured[-1]["elapsed_s"] - steps[args.warmup - 1]["elapsed_s"]
    return {
        "tokens_per_second": sum(e["tokens"] for e in measured) / seconds,
        "steps": len(steps),
        "final_loss": result.losses[-1],
        "params": start["total_params"] - start["trainable_params"],
        "trained_share": start["trained_tokens_train"] / start["tokens_train"],
    }


def _baseline(args: argparse.Namespace) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments

    cuda = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines()]
    dataset = [
        {"input_ids": tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True)["input_ids"][
            : args.max_seq_length]}
        for row in rows
    ]  # fmt: skip
    dtype = torch.bfloat16 if cuda else torch.float32
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype, attn_implementation="sdpa")
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))  # fmt: skip
    pad_id = tokenizer.pad_token_id

    def collate(batch: list[dict]) -> dict:
        longest = max(len(item["input_ids"]) for item in batch)
        ids = [item["input_ids"] + [pad_id] * (longest - len(item["input_ids"])) for item in batch]
        mask = [[1] * len(item["input_ids"]) + [0] * (longest - len(item["input_ids"])) for item in batch]
        labels = [
            [t if m else -100 for t, m in zip(row, row_mask, strict=True)]
            for row, row_mask in zip(ids, mask, strict=True)
        ]
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "labels": torch.tensor(labels)}

    seen = {"tokens": 0}
    marks: list[tuple[float, int]] = []

    def count(_module: object, _args: tuple, kwargs: dict) -> None:
        seen["tokens"] += int(kwargs["attention_mask"].sum())

    model.register_forward_pre_hook(count, with_kwargs=True)

    class Timer(TrainerCallback):
        def on_step_end(self, *_args: object, **_kwargs: object) -> None:
            if cuda:
                torch.cuda.synchronize()
            marks.append((time.perf_counter(), seen["tokens"]))

    training_args = TrainingArguments(
        output_dir=args.out, per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.accumulation, max_steps=args.steps, learning_rate=2e-4,
        lr_scheduler_type="cosine", warmup_steps=0.03, logging_steps=1, save_strategy="no", report_to=[],
        bf16=cuda, seed=args.seed, dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(model=model, args=training_args, train_dataset=dataset, data_collator=collate,
                      callbacks=[Timer()])  # fmt: skip
    output = trainer.train()
    (t0, n0), (t1, n1) = marks[args.warmup - 1], marks[-1]
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    base = model.get_base_model()
    return {
        "tokens_per_second": (n1 - n0) / (t1 - t0),
        "steps": output.global_step,
        "final_loss": losses[-1] if losses else math.nan,
        "params": sum(p.numel() for p in base.parameters() if not p.requires_grad),
        "trained_share": 1.0,
    }


# --- the table --------------------------------------------------------------------------------------


def _print(results: dict, args: argparse.Namespace) -> None:
    base, ours = results["baseline"], results["ours"]
    device = ours["device"]
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in device), None)

    def mfu(run: dict) -> str:
        if peak is None:
            return "n/a"
        return f"{4 * run['params'] * run['tokens_per_second'] / (peak * 1e12):.1%}"

    rows = [
        ("device", device, device),
        ("model", args.size, args.size),
        ("steps (warm-up skipped)", f"{base['steps']} ({args.warmup})", f"{ours['steps']} ({args.warmup})"),
        ("real tokens/s", f"{base['tokens_per_second']:,.0f}", f"{ours['tokens_per_second']:,.0f}"),
        ("peak memory MB", f"{base['peak_memory_mb']:,.0f}", f"{ours['peak_memory_mb']:,.0f}"),
        ("MFU", mfu(base), mfu(ours)),
        ("tokens with loss", f"{base['trained_share']:.0%}", f"{ours['trained_share']:.0%}"),
    ]
    print()
    print(f"  {'':<26}{'baseline':>16}{'ours':>16}")
    for name, left, right in rows:
        print(f"  {name:<26}{left:>16}{right:>16}")
    ratio = ours["tokens_per_second"] / base["tokens_per_second"]
    memory = ours["peak_memory_mb"] / base["peak_memory_mb"]
    print(f"\n  ours / baseline: {ratio:.2f}x tokens/s, {memory:.2f}x peak memory")
    print(f"  batch {args.batch_size} x accumulation {args.accumulation}, max_seq_length {args.max_seq_length}\n")


if __name__ == "__main__":
    main()
