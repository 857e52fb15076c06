"""Fine-tune a bus-ticket NER model from the built-in all-MiniLM-L6-v2 backbone, on CPU.

A BertForTokenClassification over generate.TAGS, trained with a plain torch loop (AdamW,
linear warm-up and decay), saved as a Hugging Face folder (safetensors, config with
id2label/label2id, tokenizer) that `onnxport export --task token-classification` reads.

Labels follow the words of generate.py. Every sub-token gets a label: the first one the
word's tag, the others I- of the same entity (O stays O). Only the first would do for a
word-level decoder, but onnxport's extraction reads the tokenizer's own words and tokens:
"Non-AC" is three of them (non, -, ac) and "simple" aggregation labels every token, so
untrained sub-tokens would cut entities in two.

    python train.py DATA_DIR OUT_DIR/model --epochs 2 --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# Read by OpenMP when torch loads (so only if nothing imported torch yet): waiting threads sleep
# instead of spinning, which keeps a busy shared CPU from slowing training several times over.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from evaluate import bio_spans, prf  # noqa: E402
from generate import TAGS, _umask, detokenize, read_jsonl  # noqa: E402

IGNORE = -100  # label of special tokens: the loss skips them
MAX_LENGTH = 64


def inside_tag(tag: str) -> str:
    """The tag of a word's later sub-tokens: B-X -> I-X, I-X and O unchanged."""
    return "I-" + tag[2:] if tag.startswith("B-") else tag


def align_labels(tokens: list[str], tags: list[str], tokenizer, label2id: dict[str, int],
                 max_length: int = MAX_LENGTH) -> dict:
    """Tokenize the query's text and give every sub-token the label of the word it lies in."""
    text, offsets = detokenize(tokens)
    word_at = [-1] * len(text)
    for index, (start, end) in enumerate(offsets):
        word_at[start:end] = [index] * (end - start)
    encoding = tokenizer(text, return_offsets_mapping=True, truncation=True, max_length=max_length)
    labels = []
    first_token: list[int | None] = [None] * len(tokens)  # per word; None when truncated away
    for index, (start, end) in enumerate(encoding["offset_mapping"]):
        if end <= start:  # [CLS], [SEP]
            labels.append(IGNORE)
            continue
        word = word_at[start]
        labels.append(label2id[tags[word] if first_token[word] is None else inside_tag(tags[word])])
        if first_token[word] is None:
            first_token[word] = index
    return {"input_ids": encoding["input_ids"], "attention_mask": encoding["attention_mask"], "labels": labels,
            "first_token": first_token}


def collate(rows: list[dict]):
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    batch = {"input_ids": [], "attention_mask": [], "labels": []}
    for r in rows:
        pad = width - len(r["input_ids"])
        batch["input_ids"].append(r["input_ids"] + [0] * pad)
        batch["attention_mask"].append(r["attention_mask"] + [0] * pad)
        batch["labels"].append(r["labels"] + [IGNORE] * pad)
    return {k: torch.tensor(v) for k, v in batch.items()}


def length_batches(rows: list[dict], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length (sorted within pools of 8 batches), so little padding."""
    order = list(range(len(rows)))
    rng.shuffle(order)
    pool = batch_size * 8
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: len(rows[i]["input_ids"]))
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def predict_word_tags(model, rows: list[dict], id2label: dict[int, str], batch_size: int = 64) -> list[list[str]]:
    """One tag per word: the prediction of its first sub-token."""
    import torch

    model.eval()
    tags = []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            part = rows[start:start + batch_size]
            batch = collate(part)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            best = logits.argmax(-1).tolist()
            for row, ids in zip(part, best):
                tags.append([id2label[ids[i]] if i is not None else "O" for i in row["first_token"]])
    model.train()
    return tags


def entity_f1(model, rows: list[dict], examples: list[dict], id2label: dict[int, str]) -> float:
    predicted = predict_word_tags(model, rows, id2label)
    gold = [bio_spans(e["tags"]) for e in examples]
    return prf(gold, [bio_spans(tags) for tags in predicted])["f1"]


def train(train_examples: list[dict], dev_examples: list[dict], out: Path, *, backbone: Path | None = None,
          epochs: float = 3, max_steps: int | None = None, batch_size: int = 32, learning_rate: float = 2e-4,
          warmup: float = 0.1, seed: int = 0, freeze_embeddings: bool = True, log=print) -> dict:
    """Fine-tune, save the model folder to `out` (via a temp folder, then rename), return the log."""
    import torch
    from transformers import AutoTokenizer, BertForTokenClassification
    from transformers.utils import logging as hf_logging

    from onnxport.convert.sources import default_model_path

    hf_logging.set_verbosity_error()  # "some weights were newly initialized": yes, the classifier
    hf_logging.disable_progress_bar()
    random.seed(seed)
    torch.manual_seed(seed)
    backbone = Path(backbone or default_model_path())
    id2label = dict(enumerate(TAGS))
    label2id = {tag: i for i, tag in id2label.items()}
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    model = BertForTokenClassification.from_pretrained(backbone, num_labels=len(TAGS), id2label=id2label,
                                                       label2id=label2id)
    if freeze_embeddings:
        # The 30522 x 384 word embeddings are half the parameters: frozen, a step costs less (no
        # dense embedding gradient, half the optimizer work), which matters on a 2-core CPU.
        model.bert.embeddings.requires_grad_(False)
    rows = [align_labels(e["tokens"], e["tags"], tokenizer, label2id) for e in train_examples]
    dev_rows = [align_labels(e["tokens"], e["tags"], tokenizer, label2id) for e in dev_examples]
    steps_per_epoch = math.ceil(len(rows) / batch_size)
    total = max_steps if max_steps is not None else max(1, round(epochs * steps_per_epoch))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate,
                                  weight_decay=0.01)
    warm = max(1, int(total * warmup))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warm, max(0.0, (total - step) / max(1, total - warm))))
    log(f"training {total} steps ({len(rows)} queries, batch {batch_size}, {steps_per_epoch} steps/epoch) "
        f"from {backbone.name}, {torch.get_num_threads()} threads")
    model.train()
    rng = random.Random(seed)
    history, step, started, running = [], 0, time.perf_counter(), []
    while step < total:
        for indices in length_batches(rows, batch_size, rng):
            if step >= total:
                break
            batch = collate([rows[i] for i in indices])
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            running.append(loss.item())
            step += 1
            if step % 50 == 0 or step == total:
                history.append({"step": step, "loss": sum(running) / len(running),
                                "seconds": round(time.perf_counter() - started, 1)})
                log(f"step {step}/{total}: loss {history[-1]['loss']:.4f} ({history[-1]['seconds']}s)")
                running = []
    seconds = time.perf_counter() - started
    dev_f1 = entity_f1(model, dev_rows, dev_examples, id2label) if dev_rows else None
    if dev_f1 is not None:
        log(f"dev entity F1 {dev_f1:.4f} ({len(dev_rows)} queries)")
    report = {"backbone": str(backbone), "steps": total, "freeze_embeddings": freeze_embeddings,
              "batch_size": batch_size, "learning_rate": learning_rate,
              "train_queries": len(rows), "dev_queries": len(dev_rows), "seed": seed,
              "train_seconds": round(seconds, 1), "dev_entity_f1": dev_f1, "history": history}
    save(model.eval(), tokenizer, out, report)
    return report


def save(model, tokenizer, out: Path, report: dict) -> None:
    """Write the whole folder beside `out`, then rename it into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / "training.json").write_text(json.dumps(report, indent=2))
        staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; give it the usual mode
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="folder with train.jsonl and dev.jsonl from generate.py")
    parser.add_argument("out", type=Path, help="model folder to write")
    parser.add_argument("--epochs", type=float, default=3, help="passes over train.jsonl [default: 3]")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps (overrides --epochs)")
    parser.add_argument("--batch-size", type=int, default=32, help="[default: 32]")
    parser.add_argument("--learning-rate", type=float, default=2e-4, help="[default: 2e-4]")
    parser.add_argument("--seed", type=int, default=0, help="[default: 0]")
    parser.add_argument("--backbone", type=Path, help="model folder to start from [default: built-in all-MiniLM-L6-v2]")
    parser.add_argument("--train-embeddings", action="store_true",
                        help="also train the embedding layer (slower; frozen by default)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.epochs <= 0 or (args.max_steps is not None and args.max_steps < 1):
        parser.error("--batch-size and --max-steps must be at least 1 and --epochs above 0")
    if args.out.exists() and any(args.out.iterdir()) and not args.force:
        parser.error(f"{args.out} exists and is not empty; choose another folder or pass --force")
    train_examples = read_jsonl(args.data_dir / "train.jsonl")
    dev_path = args.data_dir / "dev.jsonl"
    dev_examples = read_jsonl(dev_path) if dev_path.exists() else []
    if not train_examples:
        parser.error(f"{args.data_dir / 'train.jsonl'} has no examples")
    train(train_examples, dev_examples, args.out, backbone=args.backbone, epochs=args.epochs,
          max_steps=args.max_steps, batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed,
          freeze_embeddings=not args.train_embeddings)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
