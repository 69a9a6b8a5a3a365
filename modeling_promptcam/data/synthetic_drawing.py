"""The drawing of one synthetic bird ([`draw_traits`]): the body plan every class shares, any combination of the
traits that tell the classes apart, one exact mask per trait drawn, and the part keypoints ([`part_keypoints`]).
The datasets built from it: `data.synthetic` (one trait per class) and `data.synthetic_taxonomy` (one trait per level).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SUPERSAMPLE = 2  # drawn at twice the size, then downsampled: smooth edges, exact masks
MAX_TRAIT_FRACTION = 0.05  # a trait covers at most this fraction of the image
TEXTURES = ("stripes", "checks", "dots")

# The body parts with a keypoint, in the order of parts/parts.txt (ids 1, 2, ...), and where each keypoint sits in
# bird coordinates (facing right, body centred at the origin, y down; the shapes `draw_traits` draws): the centre of the
# head, eye, throat patch, wing patch and the tail's base, a point of the crest and of the body that no other shape
# covers, and the point between the legs.
PART_KEYPOINTS: dict[str, tuple[float, float]] = {
    "head": (52.0, -22.0),
    "eye": (58.0, -24.0),
    "crest": (52.0, -42.0),
    "throat": (40.0, 8.0),
    "wing": (-10.0, -5.0),
    "tail": (-55.0, 0.0),
    "body": (10.0, 22.0),
    "legs": (-1.0, 42.0),
}
PART_NAMES = tuple(PART_KEYPOINTS)

# The shapes a trait can take (bird coordinates, as PART_KEYPOINTS): the flat dataset draws the plain tail, the forked
# tail and the spiked crest; the synthetic taxonomy also the fanned tail and the tufted crest, so that both children of
# a node differ in the shape of one part and neither can be told by the absence of the other's trait.
TAIL_SHAPES: dict[str, np.ndarray] = {
    "plain": np.array([[-45, -8], [-88, -16], [-92, 0], [-88, 16], [-45, 8]], float),
    "forked": np.array([[-45, -8], [-112, -42], [-62, 0], [-112, 42], [-45, 8]], float),
    "pointed": np.array([[-45, -10], [-84, -10], [-124, 0], [-84, 10], [-45, 10]], float),
    # the forked tail's outline with its notch filled: the two differ only where the notch is, so a head that tells
    # them apart looks at the tail itself (against the pointed tail, it could look for prongs where none are)
    "fanned": np.array([[-45, -8], [-112, -42], [-119, -21], [-122, 0], [-119, 21], [-112, 42], [-45, 8]], float),
}
CREST_SHAPES: dict[str, np.ndarray] = {
    "spikes": np.array([[34, -33], [20, -76], [42, -50], [50, -88], [58, -50], [80, -74], [70, -33]], float),
    "tuft": np.array([[32, -34], [30, -52], [40, -64], [56, -68], [72, -60], [76, -46], [72, -34]], float),
}


# ----------------------------------------------------------------------------------------------- geometry
def _ellipse(cx: float, cy: float, rx: float, ry: float, points: int = 40) -> np.ndarray:
    angles = np.linspace(0, 2 * math.pi, points, endpoint=False)
    return np.stack((cx + rx * np.cos(angles), cy + ry * np.sin(angles)), axis=1)


class Pose:
    """Bird coordinates (facing right, body centred at the origin, y down) -> supersampled canvas pixels."""

    def __init__(self, scale: float, angle: float, flip: bool, centre: tuple[float, float]):
        cos, sin = math.cos(angle), math.sin(angle)
        self.matrix = scale * SUPERSAMPLE * np.array([[cos, -sin], [sin, cos]]) @ np.diag([-1.0 if flip else 1.0, 1.0])
        self.offset = np.array(centre) * SUPERSAMPLE

    def __call__(self, points: np.ndarray) -> list[tuple[float, float]]:
        return [tuple(p) for p in points @ self.matrix.T + self.offset]


def _random_colour(rng: np.random.Generator, lightness: tuple[float, float] = (0.2, 0.85)) -> tuple[int, int, int]:
    import colorsys

    hue, light, saturation = rng.random(), rng.uniform(*lightness), rng.uniform(0.35, 0.9)
    return tuple(int(255 * c) for c in colorsys.hls_to_rgb(hue, light, saturation))


def _contrasting_pair(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    return _random_colour(rng, (0.12, 0.3)), _random_colour(rng, (0.7, 0.9))


def _texture(kind: str, size: int, period: float, angle: float, colours, rng: np.random.Generator) -> Image.Image:
    """A `size` x `size` RGB texture: stripes, checks or dots with the given period (pixels) and orientation."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    u = xs * math.cos(angle) + ys * math.sin(angle) + rng.uniform(0, period)
    v = -xs * math.sin(angle) + ys * math.cos(angle) + rng.uniform(0, period)
    if kind == "stripes":
        on = (u % period) < period / 2
    elif kind == "checks":
        on = ((u // (period / 2)) + (v // (period / 2))) % 2 == 0
    elif kind == "dots":
        du, dv = (u % period) - period / 2, (v % period) - period / 2
        on = du * du + dv * dv < (period * 0.3) ** 2
    else:
        raise ValueError(f"Unknown texture {kind!r}; expected one of {TEXTURES}.")
    dark, light = np.array(colours[0], np.uint8), np.array(colours[1], np.uint8)
    return Image.fromarray(np.where(on[..., None], dark, light).astype(np.uint8))


def _paste_texture(canvas: Image.Image, polygon, texture: Image.Image) -> None:
    region = Image.new("L", canvas.size, 0)
    ImageDraw.Draw(region).polygon(polygon, fill=255)
    canvas.paste(texture, (0, 0), region)


# ----------------------------------------------------------------------------------------------- drawing
def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A smooth two-colour gradient with soft blobs (class-independent)."""
    top, bottom = np.array(_random_colour(rng, (0.3, 0.85))), np.array(_random_colour(rng, (0.3, 0.85)))
    ramp = np.linspace(0, 1, size)[:, None, None]
    canvas = Image.fromarray((top * (1 - ramp) + bottom * ramp).repeat(size, axis=1).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(3, 7))):
        cx, cy, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(0.05, 0.2) * size]
        draw.ellipse((cx - r, cy - r * 0.7, cx + r, cy + r * 0.7), fill=_random_colour(rng))
    canvas = canvas.filter(ImageFilter.GaussianBlur(size / 40))
    return canvas


def part_keypoints(pose: Pose, crested: bool) -> dict[str, tuple[float, float, bool]]:
    """Every part's keypoint of `PART_KEYPOINTS` for a bird drawn with `pose`, `(x, y, visible)` in pixels of the
    image; the crest is visible only on a `crested` bird."""
    points = np.array(list(PART_KEYPOINTS.values()))
    image_points = np.array(pose(points)) / SUPERSAMPLE
    return {
        part: (float(x), float(y), part != "crest" or crested) for part, (x, y) in zip(PART_KEYPOINTS, image_points)
    }


def draw_traits(
    rng: np.random.Generator,
    image_size: int,
    wing_texture: str | None = None,
    crest: bool | str = False,
    fork: bool = False,
    band: bool = False,
    throat: bool = False,
    tail: str | None = None,
) -> tuple[Image.Image, dict[str, np.ndarray], dict[str, tuple[float, float, bool]]]:
    """One bird with the given traits (any combination), one mask per trait drawn (`wing`, `crest`, `tail`,
    `band`, `throat`) and its part keypoints (`bird_keypoints`; they take nothing from `rng`). `crest` is False, True
    (the spiked crest) or a `CREST_SHAPES` name; `tail` a `TAIL_SHAPES` name (`fork=True` is `tail="forked"`; the
    default the plain tail, no trait). The random draws happen in one fixed order whatever the traits, so a one-trait
    bird is drawn exactly as the flat dataset always drew it."""
    crest_shape = "spikes" if crest is True else crest or None
    tail_shape = tail or ("forked" if fork else "plain")
    if fork and tail_shape != "forked":
        raise ValueError(f"fork=True and tail={tail!r} contradict each other: give one of them")
    for name, value, shapes in (("crest", crest_shape, CREST_SHAPES), ("tail", tail_shape, TAIL_SHAPES)):
        if value is not None and value not in shapes:
            raise ValueError(f"{name}={value!r} is not a {name} shape: choose one of {', '.join(shapes)}")
    size = image_size * SUPERSAMPLE
    canvas = _background(rng, size)
    trait_masks: dict[str, Image.Image] = {}

    def mask_draw(name: str) -> ImageDraw.ImageDraw:
        if name not in trait_masks:
            trait_masks[name] = Image.new("L", (size, size), 0)
        return ImageDraw.Draw(trait_masks[name])

    draw = ImageDraw.Draw(canvas)

    # the bird spans about 150 x 110 px at scale 1 on a 224 px image; keep it inside the frame
    unit = image_size / 224
    scale = rng.uniform(0.85, 1.05) * unit
    angle, flip = rng.uniform(-0.3, 0.3), bool(rng.random() < 0.5)
    margin = 80 * scale
    centre = (rng.uniform(margin, image_size - margin), rng.uniform(margin * 0.85, image_size - margin * 0.85))
    pose = Pose(scale, angle, flip, centre)
    body_colour, head_colour, wing_colour = (_random_colour(rng) for _ in range(3))
    beak_colour, leg_colour = _random_colour(rng, (0.5, 0.8)), _random_colour(rng, (0.2, 0.4))

    def shape(points, colour, mask: str | None = None) -> None:
        polygon = pose(points)
        draw.polygon(polygon, fill=colour)
        if mask:
            mask_draw(mask).polygon(polygon, fill=255)

    # legs, tail, body, wing, head, beak, eye: the order they overlap in
    for x in (-12.0, 10.0):
        shape(np.array([[x, 25], [x + 4, 25], [x + 2, 58], [x - 2, 58]]), leg_colour)
    shape(TAIL_SHAPES[tail_shape], body_colour if rng.random() < 0.5 else wing_colour)
    if tail_shape != "plain":  # the trait is the tail's shape: its region is where it or the plain tail could be
        for outline in (TAIL_SHAPES[tail_shape], TAIL_SHAPES["plain"]):
            mask_draw("tail").polygon(pose(outline), fill=255)
    shape(_ellipse(0, 0, 55, 34), body_colour)
    wing = _ellipse(-6, -4, 38, 20)
    shape(wing, wing_colour)
    if wing_texture is not None:
        texture = _texture(
            wing_texture,
            size,
            rng.uniform(6.0, 8.0) * scale * SUPERSAMPLE,
            rng.uniform(0, math.pi),
            _contrasting_pair(rng),
            rng,
        )
        patch = pose(_ellipse(-10, -5, 31, 16))
        _paste_texture(canvas, patch, texture)
        mask_draw("wing").polygon(patch, fill=255)
    if throat:
        throat_patch = pose(_ellipse(40, 8, 18, 15))
        spots = _texture("dots", size, 6.0 * scale * SUPERSAMPLE, 0.0, _contrasting_pair(rng), rng)
        _paste_texture(canvas, throat_patch, spots)
        mask_draw("throat").polygon(throat_patch, fill=255)
    shape(_ellipse(52, -22, 22, 20), head_colour)
    if crest_shape is not None:  # in front of the head, so all of it shows
        shape(CREST_SHAPES[crest_shape], _random_colour(rng), mask="crest")
    shape(np.array([[70, -28], [92, -20], [70, -14]]), beak_colour)
    if band:
        shape(np.array([[30, -32], [76, -32], [76, -14], [30, -14]]), _random_colour(rng, (0.05, 0.15)), mask="band")
    shape(_ellipse(58, -24, 4.5, 4.5), (15, 15, 15))

    # area averaging for both: a pixel the trait touches at all is in the mask, and no filter rings beyond it
    image = canvas.resize((image_size, image_size), Image.BOX)
    masks = {
        name: np.asarray(mask.resize((image_size, image_size), Image.BOX)) > 0 for name, mask in trait_masks.items()
    }
    return image, masks, part_keypoints(pose, crested=crest_shape is not None)


__all__ = [
    "CREST_SHAPES",
    "MAX_TRAIT_FRACTION",
    "PART_KEYPOINTS",
    "PART_NAMES",
    "SUPERSAMPLE",
    "TAIL_SHAPES",
    "TEXTURES",
    "Pose",
    "draw_traits",
    "part_keypoints",
]
