"""The embedded offline dataset: a small COCO-layout sample that vlmbench draws itself.

Why it exists: the quick start must run on a machine with no network and no COCO download. The
images are simple scenes of coloured shapes, and each caption says what is drawn (which shape, its
colour, where it is and how many there are), so the sample is a real (if easy) captioning task in
the standard `val2017/` + `annotations/` layout, and a model that captions it well must look at the
image. Generation is deterministic for (count, seed) and cached under the vlmbench cache folder.

A scene is one group of 1-3 identical shapes in one region of the image (left, right, top, bottom
or centre), or two groups of 1-2 shapes in opposite halves (left and right, or top and bottom).
The first of the five captions is the plain description ("two red circles on the left and a blue
square on the right"); the others wrap it in varied phrasing and name the background.
"""
from __future__ import annotations

import io
import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from vlmbench.paths import cache_dir, owned_temp_dir

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (240, 210, 40),
           "purple": (140, 60, 170), "orange": (245, 140, 30)}
BACKGROUNDS = {"white": (245, 245, 245), "black": (20, 20, 20), "grey": (128, 128, 128)}
SHAPES = ("circle", "square", "triangle")
SIZE = 256
SAMPLE_VERSION = 2  # part of the cache folder name: a change to the drawing never reuses an old sample
# Regions as (x0, y0, x1, y1) boxes on the SIZE x SIZE canvas, with the phrase a caption uses.
REGIONS = {"left": ((0, 0, 128, 256), "on the left"), "right": ((128, 0, 256, 256), "on the right"),
           "top": ((0, 0, 256, 128), "at the top"), "bottom": ((0, 128, 256, 256), "at the bottom"),
           "centre": ((0, 64, 256, 192), "in the centre")}
OPPOSITE_HALVES = (("left", "right"), ("top", "bottom"))
COUNT_WORDS = {2: "two", 3: "three"}  # one shape: "a" or "an"
SHAPE_SIZE = {1: 92, 2: 76, 3: 62}  # side in pixels of each shape's bounding box, by shapes per group


@dataclass(frozen=True)
class Group:
    """`count` identical shapes of one colour in one region."""
    colour: str
    shape: str
    count: int
    region: str

    def phrase(self) -> str:
        noun = self.shape if self.count == 1 else self.shape + "s"
        article = ("an" if self.colour[0] in "aeiou" else "a") if self.count == 1 else COUNT_WORDS[self.count]
        return f"{article} {self.colour} {noun} {REGIONS[self.region][1]}"


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple, colour: tuple) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=colour)


def shape_boxes(group: Group, rng: random.Random) -> list[tuple]:
    """Bounding boxes of the group's shapes, spread evenly along the long side of its region, jittered."""
    x0, y0, x1, y1 = REGIONS[group.region][0]
    side = SHAPE_SIZE[group.count] + rng.randint(-6, 6)
    horizontal = (x1 - x0) >= (y1 - y0)
    length = (x1 - x0) if horizontal else (y1 - y0)
    cell = length // group.count
    boxes = []
    for k in range(group.count):
        along = (x0 if horizontal else y0) + k * cell + (cell - side) // 2 + rng.randint(-4, 4)
        across = (y0 + y1 - side) // 2 if horizontal else (x0 + x1 - side) // 2
        across += rng.randint(-8, 8)
        left, top = (along, across) if horizontal else (across, along)
        boxes.append((left, top, left + side, top + side))
    return boxes


def random_groups(rng: random.Random) -> list[Group]:
    """One group anywhere, or two different-looking groups in opposite halves (the left one or top one first)."""
    if rng.random() < 0.5:
        region = rng.choice(list(REGIONS))
        return [Group(rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.randint(1, 3), region)]
    halves = rng.choice(OPPOSITE_HALVES)
    first = (rng.choice(list(COLOURS)), rng.choice(SHAPES))
    second = first
    while second == first:
        second = (rng.choice(list(COLOURS)), rng.choice(SHAPES))
    return [Group(*first, rng.randint(1, 2), halves[0]), Group(*second, rng.randint(1, 2), halves[1])]


def scene_captions(groups: list[Group], background: str) -> list[str]:
    """Five reference captions; the first is the plain description of the groups."""
    scene = " and ".join(g.phrase() for g in groups)
    return [scene, f"{scene} on a {background} background", f"a picture of {scene}",
            f"a simple drawing of {scene} on a plain {background} background", f"a {background} image with {scene}"]


def caption_attributes(caption: str) -> tuple[frozenset, frozenset]:
    """The colour words and the shape words (singular) a caption names, e.g. for checking a model's captions.

    "two red circles on the left and a blue square" -> ({"red", "blue"}, {"circle", "square"}).
    """
    words = [w.strip(".,") for w in caption.lower().split()]
    colours = frozenset(w for w in words if w in COLOURS)
    shapes = frozenset(w.removesuffix("s") for w in words if w.removesuffix("s") in SHAPES)
    return colours, shapes


def draw_scene(rng: random.Random) -> tuple[Image.Image, list[str]]:
    """One SIZE x SIZE image of one or two groups of shapes, and five captions that describe it."""
    bg_name = rng.choice(list(BACKGROUNDS))
    image = Image.new("RGB", (SIZE, SIZE), BACKGROUNDS[bg_name])
    draw = ImageDraw.Draw(image)
    groups = random_groups(rng)
    for group in groups:
        for box in shape_boxes(group, rng):
            _draw_shape(draw, group.shape, box, COLOURS[group.colour])
    return image, scene_captions(groups, bg_name)


def jpeg_bytes(image: Image.Image) -> bytes:
    """The JPEG file the sample stores for `image` (quality 90)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


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
        (root / "val2017" / file_name).write_bytes(jpeg_bytes(image))
        images.append({"id": image_id, "file_name": file_name, "width": SIZE, "height": SIZE})
        annotations += [{"id": image_id * 10 + k, "image_id": image_id, "caption": c} for k, c in enumerate(captions)]
    doc = {"info": {"description": f"vlmbench synthetic shapes sample v{SAMPLE_VERSION}"}, "images": images,
           "annotations": annotations}
    (root / "annotations" / "captions_val2017.json").write_text(json.dumps(doc))


def ensure_synthetic_sample(count: int, seed: int) -> Path:
    """The cached sample folder for (count, seed), generated on first use (atomically)."""
    target = cache_dir("synthetic") / f"shapes-v{SAMPLE_VERSION}-{count}-seed{seed}"
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
