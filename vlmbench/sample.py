"""The embedded offline dataset: a small COCO-layout sample that vlmbench draws itself.

Why it exists: the quick start must run on a machine with no network and no COCO download. The
images are simple scenes of coloured shapes, and each caption says what is drawn, so the sample is
a real (if easy) captioning task in the standard `val2017/` + `annotations/` layout. Generation is
deterministic for (count, seed) and cached under the vlmbench cache folder.
"""
from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path

from PIL import Image, ImageDraw

from vlmbench.paths import cache_dir, owned_temp_dir

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (240, 210, 40),
           "purple": (140, 60, 170), "orange": (245, 140, 30)}
BACKGROUNDS = {"white": (245, 245, 245), "black": (20, 20, 20), "grey": (128, 128, 128)}
SHAPES = ("circle", "square", "triangle")
SIZE = 256


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple, colour: tuple) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=colour)


def draw_scene(rng: random.Random) -> tuple[Image.Image, list[str]]:
    """One image with one or two shapes, and five captions that describe it."""
    bg_name = rng.choice(list(BACKGROUNDS))
    image = Image.new("RGB", (SIZE, SIZE), BACKGROUNDS[bg_name])
    draw = ImageDraw.Draw(image)
    things = []
    for slot in range(rng.choice((1, 2))):
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        x0 = 20 + slot * 118 + rng.randint(0, 20)
        y0 = rng.randint(20, 120)
        _draw_shape(draw, shape, (x0, y0, x0 + 96, y0 + 96), COLOURS[colour])
        things.append(f"a {colour} {shape}")
    scene = " and ".join(things)
    captions = [f"{scene} on a {bg_name} background", f"a picture of {scene}",
                f"{scene} drawn on a plain {bg_name} background", f"a simple drawing showing {scene}",
                f"there is {scene} in the image"]
    return image, captions


def write_sample(root: Path, count: int, seed: int) -> None:
    """Writes `count` images and their captions in the COCO 2017 val layout under `root`."""
    rng = random.Random(seed)
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    images, annotations = [], []
    for index in range(count):
        image_id = index + 1
        image, captions = draw_scene(rng)
        file_name = f"{image_id:012d}.jpg"
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        (root / "val2017" / file_name).write_bytes(buffer.getvalue())
        images.append({"id": image_id, "file_name": file_name, "width": SIZE, "height": SIZE})
        annotations += [{"id": image_id * 10 + k, "image_id": image_id, "caption": c} for k, c in enumerate(captions)]
    doc = {"info": {"description": "vlmbench synthetic shapes sample"}, "images": images, "annotations": annotations}
    (root / "annotations" / "captions_val2017.json").write_text(json.dumps(doc))


def ensure_synthetic_sample(count: int, seed: int) -> Path:
    """The cached sample folder for (count, seed), generated on first use (atomically)."""
    target = cache_dir("synthetic") / f"shapes-{count}-seed{seed}"
    if (target / "annotations" / "captions_val2017.json").is_file():
        return target
    staging = owned_temp_dir(target.parent, ".staging-")  # a killed run's is swept by the next run
    try:
        write_sample(staging / "sample", count, seed)
        try:
            (staging / "sample").rename(target)
        except OSError:  # another process finished first
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
