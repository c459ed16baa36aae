"""Trains the embedded tiny captioner that `model.weights: embedded` loads (configs/smoke.yaml).

Why it exists: the offline run needs a model that really captions, so that CIDEr and the int8
variants' losses mean something without any download. This script reproduces the shipped weights
from a seed on a CPU in minutes: a tiny Qwen2.5-VL (the real model's classes, built from config with
`vlmbench.models.loading.TRAINED_TINY_TEXT` / `TRAINED_TINY_VISION`) learns to caption the drawn-shapes
sample of `vlmbench.data.sample`, through the same processor (built in code, byte-level tokenizer), chat
prompt and image path (JPEG, decode, resize to img_size) that the benchmark uses.

Training: teacher forcing on "chat prompt with the image + caption + <|im_end|>", cross-entropy on
the caption and end tokens only; each step draws fresh scenes from a stream seeded with
"train-<seed>", so the model never sees the held-out sample (`ensure_synthetic_sample(count, 42)`,
a different stream) it is scored on. AdamW, linear warm-up then cosine decay, fp32; saved in fp16.

Reading the image comes late: the model first learns the captions' grammar and word frequencies (the
language prior, about 0.17 nats per caption byte with the image ignored) and only then ties words to
pixels. The first shipped stage (320 steps of 8 scenes) stopped on that plateau, so its captions were
one sentence whatever the image; gradients did reach the vision tower and merger, and the inputs are
the benchmark's own. The defaults (4,000 steps of 16 scenes, 25x the scenes; the image starts to
matter after ~300 steps) go well past it: ~9 minutes on one CPU thread. Each
log line shows the probe that tells the two phases apart: the loss with the batch's images rotated
(`shuffled_image_loss`), which stays at the training loss until the model reads the image.

    python scripts/train_tiny_captioner.py                    # writes vlmbench/assets/tiny_captioner/
    python scripts/train_tiny_captioner.py --steps 50 --heldout-images 8 --out /tmp/tc   # a quick try

The last line printed is one JSON document with the run's figures (also in TRAINING.md).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch

from vlmbench.data.images import decode_image
from vlmbench.scoring.metrics import cider
from vlmbench.models.loading import EMBEDDED_CAPTIONER_DIR, EMBEDDED_CAPTIONER_INPUT, TRAINED_TINY_TEXT, \
    TRAINED_TINY_VISION, build_builtin_processor, tiny_config_dict
from vlmbench.paths import atomic_write_text
from vlmbench.data.sample import caption_attributes, draw_scene, ensure_synthetic_sample, jpeg_bytes

DEFAULT_PROMPT = EMBEDDED_CAPTIONER_INPUT["prompt"]  # what configs/smoke.yaml sends


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seeds the weights' init and the training scenes")
    parser.add_argument("--steps", type=int, default=4000, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=16, help="scenes per step")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    parser.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    parser.add_argument("--img-size", type=int, default=EMBEDDED_CAPTIONER_INPUT["img_size"],
                        help="must match inference.img_size at run time")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (2 on two shared cores ran 10x slower than 1: oversubscribed)")
    parser.add_argument("--log-every", type=int, default=100, help="steps between log lines (and image probes)")
    parser.add_argument("--heldout-images", type=int, default=48, help="held-out sample size scored at the end")
    parser.add_argument("--heldout-seed", type=int, default=42, help="held-out sample seed (the smoke run's)")
    parser.add_argument("--out", type=Path, default=EMBEDDED_CAPTIONER_DIR, help="output folder")
    parser.add_argument("--init", type=Path, default=None,
                        help="start from the fp16 weights in this folder (a previous stage) instead of a seeded init")
    return parser.parse_args()


def chat_prompt(processor, prompt: str) -> str:
    """The generation prompt the benchmark's Captioner sends (vlmbench.run.runner)."""
    return processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}],
        add_generation_prompt=True, tokenize=False)


def training_batch(processor, prompt_text: str, rng: random.Random, size: int, img_size: int) -> dict:
    """Processor inputs for `size` fresh scenes, with `labels` on caption and end tokens only.

    Right-padded, so that every row's prompt starts at position 0 and the prompt's label mask is one slice."""
    processor.tokenizer.padding_side = "right"
    scenes = [draw_scene(rng) for _ in range(size)]
    images = [decode_image(jpeg_bytes(image), img_size) for image, _ in scenes]
    texts = [prompt_text + captions[0] + "<|im_end|>" for _, captions in scenes]
    inputs = processor(text=texts, images=images, padding=True, return_tensors="pt")
    prompt_len = len(processor(text=[prompt_text], images=images[:1], return_tensors="pt")["input_ids"][0])
    labels = inputs["input_ids"].clone()
    labels[:, :prompt_len] = -100
    labels[inputs["attention_mask"] == 0] = -100
    inputs["labels"] = labels
    return inputs


def learning_rate(step: int, args: argparse.Namespace) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * 0.5 * (1 + math.cos(math.pi * progress))


def build_model(processor, seed: int, init: Path | None = None):
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration
    if init is not None:  # a previous stage's saved fp16 weights: exact, so stages reproduce
        return Qwen2_5_VLForConditionalGeneration.from_pretrained(init, dtype=torch.float32)
    config = AutoConfig.for_model(**tiny_config_dict(processor, TRAINED_TINY_TEXT, TRAINED_TINY_VISION))
    torch.manual_seed(seed)
    return Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.float32)


@torch.no_grad()
def shuffled_image_loss(model, batch: dict) -> float:
    """The loss on `batch` with its images rotated by one scene (each caption meets another scene's image).

    The probe that tells whether the model reads the image: while it captions from the language prior
    alone this equals the training loss; once it reads the image it is far higher. All images have the
    same size, so rotating the pixel rows by one image's patch count moves whole images.
    """
    per_image = int(batch["image_grid_thw"][0].prod())
    rotated = dict(batch, pixel_values=batch["pixel_values"].roll(per_image, dims=0))
    model.eval()
    loss = model(**rotated).loss.item()
    model.train()
    return loss


def train(model, processor, args: argparse.Namespace) -> tuple[list[float], dict]:
    """Runs the optimizer steps; returns the loss of every step and the shuffled-image loss at each log step."""
    prompt_text = chat_prompt(processor, DEFAULT_PROMPT)
    rng = random.Random(f"train-{args.seed}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    losses, shuffled, start = [], {}, time.perf_counter()
    model.train()
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args)
        batch = training_batch(processor, prompt_text, rng, args.batch_size, args.img_size)
        logged = step % args.log_every == 0 or step == args.steps - 1
        if logged:  # same weights as the training loss of this step
            shuffled[step] = shuffled_image_loss(model, batch)
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if logged:
            print(f"step {step:5d}  loss {loss.item():.4f}  shuffled-image loss {shuffled[step]:.4f}  "
                  f"lr {group['lr']:.2e}  {time.perf_counter() - start:7.1f} s", flush=True)
    return losses, shuffled


@torch.inference_mode()
def caption_images(model, processor, images: list, max_new_tokens: int = 96, batch: int = 16) -> list[str]:
    """Greedy captions, left-padded batches, stopped by <|im_end|> (as the benchmark generates)."""
    processor.tokenizer.padding_side = "left"
    prompt_text = chat_prompt(processor, DEFAULT_PROMPT)
    end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    out = []
    for i in range(0, len(images), batch):
        inputs = processor(text=[prompt_text] * len(images[i:i + batch]), images=images[i:i + batch], padding=True,
                           return_tensors="pt")
        ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=end,
                             pad_token_id=processor.tokenizer.pad_token_id)
        out += [t.strip() for t in processor.batch_decode(ids[:, inputs["input_ids"].shape[1]:],
                                                          skip_special_tokens=True)]
    return out


def heldout_cider(model, processor, args: argparse.Namespace) -> tuple[float, dict, list]:
    """CIDEr-D on the held-out sample (count, seed), the way the benchmark reads it from disk."""
    from vlmbench.data.sources import rows_from_coco_dir
    from vlmbench.data.images import load_image
    rows = rows_from_coco_dir(ensure_synthetic_sample(args.heldout_images, args.heldout_seed))
    model.eval()
    captions = caption_images(model, processor, [load_image(r, args.img_size).image for r in rows])
    result = cider({r.image_id: list(r.captions) for r in rows}, {r.image_id: c for r, c in zip(rows, captions)})
    examples = [(r.captions[0], c) for r, c in zip(rows[:8], captions[:8])]
    return result.score, {"tokenizer": result.tokenizer, "distinct_captions": len(set(captions)),
                          "exact_matches": sum(c == r.captions[0] for r, c in zip(rows, captions)),
                          "attributes_match": sum(caption_attributes(c) == caption_attributes(r.captions[0])
                                                  for r, c in zip(rows, captions))}, examples


def loss_summary(losses: list[float]) -> list[tuple[int, float]]:
    """Mean loss over windows of the run (first step, then ten equal windows): the curve in brief."""
    width = max(1, len(losses) // 10)
    points = [(0, losses[0])]
    for start in range(0, len(losses), width):
        window = losses[start:start + width]
        points.append((start + len(window) - 1, sum(window) / len(window)))
    return points


def write_training_md(path: Path, args, report: dict, examples: list, losses: list[float]) -> None:
    curve = "\n".join(f"| {step} | {loss:.4f} |" for step, loss in report["loss_curve"])
    probe = "\n".join(f"| {step} | {losses[step]:.4f} | {loss:.4f} |" for step, loss in report["shuffled_image_loss"])
    init = f" --init {args.init}" if args.init else ""
    previous = ""
    if args.init and (args.init / "TRAINING.md").is_file():  # the earlier stage's log, one heading level down
        previous = ("\n" + (args.init / "TRAINING.md").read_text()).replace("\n#", "\n##")
        previous = "\n# Previous stage (--init)\n" + previous
    shots = "\n".join(f"| {ref} | {got} |" for ref, got in examples)
    text = f"""# The embedded tiny captioner: training log summary

Written by `scripts/train_tiny_captioner.py` (do not edit by hand). Reproduce with:

    python scripts/train_tiny_captioner.py --seed {args.seed} --steps {args.steps} --batch-size {args.batch_size} \\
        --lr {args.lr} --warmup {args.warmup} --img-size {args.img_size} --threads {args.threads}{init} \\
        --log-every {args.log_every} --out {args.out}

- Model: Qwen2_5_VLForConditionalGeneration built from config (`TRAINED_TINY_TEXT`, `TRAINED_TINY_VISION` in
  vlmbench/models/loading.py), {report['parameters']:,} parameters, saved in fp16 ({report['size_mb']:.2f} MB of safetensors).
- Processor: vlmbench's built-in one (byte-level tokenizer, {report['vocab_size']} tokens), prompt
  "{DEFAULT_PROMPT}", images at {args.img_size}x{args.img_size} px ({report['image_tokens']} image tokens).
  The model captions well only with this prompt and image size (configs/smoke.yaml uses both).
- Data: {args.steps * args.batch_size:,} scenes drawn by vlmbench/data/sample.py from the stream seeded "train-{args.seed}"
  (fresh scenes every step, none repeated on purpose); target = the first reference caption + `<|im_end|>`;
  loss on caption and end tokens only.
- Optimizer: AdamW (betas 0.9/0.98, weight decay 0.01), peak lr {args.lr}, {args.warmup} warm-up steps, cosine decay,
  gradient clipping at 1.0, fp32, seed {args.seed}, {args.threads} CPU threads, torch {torch.__version__}.
- Wall time: {report['wall_s']:.0f} s for training on this machine's CPU.
- Held-out: the sample `ensure_synthetic_sample({args.heldout_images}, seed={args.heldout_seed})` (a different
  stream than training): CIDEr-D {report['heldout_cider']:.3f} in fp32 ({report['heldout']['tokenizer']} tokenizer),
  {report['heldout']['exact_matches']} of {args.heldout_images} captions equal to the first reference,
  {report['heldout']['attributes_match']} of {args.heldout_images} naming the same colours and shapes as it,
  {report['heldout']['distinct_captions']} distinct captions.

## Loss (mean cross-entropy per caption token, nats)

| step | loss |
|---|---|
{curve}

## Does it read the image?

The loss on a step's batch, and on the same batch with its images rotated by one scene (each caption
paired with another scene's image). Equal: the model captions from the language prior alone. Far
apart: the caption depends on the image.

| step | loss | shuffled-image loss |
|---|---|---|
{probe}

## Held-out examples

| first reference | generated |
|---|---|
{shots}
{previous}"""
    atomic_write_text(path, text)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    processor = build_builtin_processor()
    model = build_model(processor, args.seed, args.init)
    start = time.perf_counter()
    losses, shuffled = train(model, processor, args)
    wall = time.perf_counter() - start
    score, heldout, examples = heldout_cider(model, processor, args)
    args.out.mkdir(parents=True, exist_ok=True)
    model.to(torch.float16).save_pretrained(args.out)
    report = {"seed": args.seed, "steps": args.steps, "batch_size": args.batch_size, "wall_s": round(wall, 1),
              "final_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4), "heldout_cider": round(score, 4),
              "heldout": heldout, "parameters": sum(p.numel() for p in model.parameters()),
              "size_mb": (args.out / "model.safetensors").stat().st_size / 1e6,
              "vocab_size": len(processor.tokenizer), "image_tokens": (args.img_size // 28) ** 2,
              "loss_curve": [(s, round(v, 4)) for s, v in loss_summary(losses)],
              "shuffled_image_loss": [(s, round(v, 4)) for s, v in shuffled.items()]}
    write_training_md(args.out / "TRAINING.md", args, report, examples, losses)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
