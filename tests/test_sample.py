"""The drawn-shapes sample: captions say what is drawn (shape, colour, position, count), deterministically."""
import random

import pytest

from vlmbench.data.sample import COLOURS, REGIONS, SHAPES, Group, draw_scene, random_groups, scene_captions, shape_boxes


def scenes(count: int, seed: int = 0):
    rng = random.Random(seed)
    return [draw_scene(rng) for _ in range(count)]


def test_same_seed_same_scenes():
    first, second = scenes(5, seed=3), scenes(5, seed=3)
    assert [c for _, c in first] == [c for _, c in second]
    assert [im.tobytes() for im, _ in first] == [im.tobytes() for im, _ in second]
    assert [c for _, c in scenes(5, seed=4)] != [c for _, c in first]


def test_captions_cover_every_shape_colour_position_and_count():
    text = " ".join(captions[0] for _, captions in scenes(300))
    for word in [*COLOURS, *SHAPES, "left", "right", "top", "bottom", "centre", "two", "three", " and "]:
        assert word in text, f"no caption in 300 scenes mentions {word!r}"
    assert len({captions[0] for _, captions in scenes(300)}) > 150  # captions vary with the scene


@pytest.mark.parametrize("group, phrase", [
    (Group("red", "circle", 1, "left"), "a red circle on the left"),
    (Group("orange", "square", 1, "top"), "an orange square at the top"),
    (Group("blue", "triangle", 3, "centre"), "three blue triangles in the centre"),
    (Group("green", "square", 2, "bottom"), "two green squares at the bottom"),
])
def test_group_phrases(group, phrase):
    assert group.phrase() == phrase


def test_references_all_contain_the_plain_description():
    groups = [Group("red", "circle", 2, "left"), Group("blue", "square", 1, "right")]
    captions = scene_captions(groups, "grey")
    assert captions[0] == "two red circles on the left and a blue square on the right"
    assert len(captions) == 5 and all(captions[0] in c for c in captions)
    assert sum("grey" in c for c in captions) == 3


def test_shapes_stay_inside_their_region_and_do_not_overlap():
    rng = random.Random(1)
    for _ in range(200):
        for group in random_groups(rng):
            x0, y0, x1, y1 = REGIONS[group.region][0]
            boxes = shape_boxes(group, rng)
            assert len(boxes) == group.count
            for left, top, right, bottom in boxes:
                assert x0 <= left and right <= x1 and y0 <= top and bottom <= y1, (group, boxes)
            for a, b in zip(boxes, boxes[1:]):
                assert a[2] <= b[0] or a[3] <= b[1], (group, boxes)


def test_drawn_colour_is_where_the_caption_says():
    rng = random.Random(2)
    for _ in range(40):
        image, captions = draw_scene(rng)
        for colour, (x0, y0, x1, y1) in _named_colours_and_regions(captions[0]):
            crop = image.crop((x0, y0, x1, y1))
            assert COLOURS[colour] in [rgb for _, rgb in crop.getcolors(maxcolors=1 << 16)], captions[0]


def _named_colours_and_regions(caption: str):
    phrases = {phrase: box for box, phrase in REGIONS.values()}
    for part in caption.split(" and "):
        colour = part.split()[1]
        yield colour, next(box for phrase, box in phrases.items() if part.endswith(phrase))
