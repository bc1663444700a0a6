"""Synthetic US licence plates: state layouts, colours, fonts, text patterns.

Everything is drawn with Pillow from fonts installed by Debian packages (DejaVu,
Liberation, FreeFont). ``render_plate(rng)`` is deterministic for a given
``numpy.random.Generator`` state.
"""

from __future__ import annotations

import glob
import string
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

LETTERS = string.ascii_uppercase
DIGITS = string.digits
# Letters US states avoid in serials (I, O, Q are rare); keep them rare, not absent.
COMMON_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"

# Font search: the plate glyphs are condensed bold sans; headers use anything.
_PLATE_FONT_GLOBS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSansNarrow-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationMono-Bold.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSansBold.ttf",
    "/usr/share/fonts/truetype/freefont/FreeMonoBold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSansNarrow-Regular.ttf",
)
_HEADER_FONT_GLOBS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerifCondensed-BoldItalic.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSerif-BoldItalic.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Italic.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSerifBoldItalic.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)


def _existing(paths: tuple[str, ...]) -> list[str]:
    found = [p for pat in paths for p in sorted(glob.glob(pat))]
    if not found:  # any TrueType font on the machine will do
        found = sorted(glob.glob("/usr/share/fonts/truetype/**/*.ttf", recursive=True))
    if not found:
        raise RuntimeError("no TrueType fonts found: apt-get install fonts-dejavu-core")
    return found


@lru_cache(maxsize=1)
def plate_fonts() -> list[str]:
    """Font files used for the plate characters."""
    return _existing(_PLATE_FONT_GLOBS)


@lru_cache(maxsize=1)
def header_fonts() -> list[str]:
    """Font files used for state names and slogans."""
    return _existing(_HEADER_FONT_GLOBS)


@lru_cache(maxsize=256)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


@dataclass(frozen=True)
class StateStyle:
    """How one state's standard-issue plate looks (roughly)."""

    code: str
    name: str
    patterns: tuple[str, ...]  # L = letter, D = digit, X = either, ' ' / '-' separators
    bg: tuple[int, int, int]
    fg: tuple[int, int, int]
    header: tuple[int, int, int]
    slogan: str


# Approximate looks of common state plates; patterns from their current serial formats.
STATES: tuple[StateStyle, ...] = (
    StateStyle("CA", "California", ("DLLLDDD",), (245, 245, 245), (20, 30, 110), (170, 20, 30), "dmv.ca.gov"),
    StateStyle(
        "TX", "TEXAS", ("LLL-DDDD", "LLDDLDD"), (240, 240, 235), (15, 15, 15), (20, 20, 20), "The Lone Star State"
    ),
    StateStyle("NY", "NEW YORK", ("LLL-DDDD",), (250, 250, 245), (20, 40, 120), (20, 40, 120), "EXCELSIOR"),
    StateStyle(
        "FL",
        "FLORIDA",
        ("LLL-LDD", "DDD-LLL", "LLLD DD"),
        (245, 245, 240),
        (20, 90, 50),
        (220, 110, 20),
        "Sunshine State",
    ),
    StateStyle(
        "IL", "Illinois", ("LL DDDDD", "LDD DDDD"), (245, 245, 245), (130, 20, 30), (20, 20, 120), "Land of Lincoln"
    ),
    StateStyle("PA", "PENNSYLVANIA", ("LLL-DDDD",), (245, 240, 220), (20, 40, 110), (20, 40, 110), "visitPA.com"),
    StateStyle("OH", "OHIO", ("LLL DDDD",), (240, 240, 235), (20, 20, 20), (150, 30, 40), "BIRTHPLACE OF AVIATION"),
    StateStyle("MI", "MICHIGAN", ("LLL DDDD", "DLLLDD"), (240, 240, 240), (10, 10, 10), (10, 10, 10), "PURE MICHIGAN"),
    StateStyle("GA", "GEORGIA", ("LLL DDDD",), (245, 245, 240), (10, 10, 10), (10, 10, 10), "In God We Trust"),
    StateStyle("NC", "NORTH CAROLINA", ("LLL-DDDD",), (245, 245, 245), (30, 30, 100), (170, 30, 40), "FIRST IN FLIGHT"),
    StateStyle("NJ", "NEW JERSEY", ("LDDLLL", "LLL-DDL"), (240, 230, 170), (10, 10, 10), (10, 10, 10), "Garden State"),
    StateStyle("VA", "VIRGINIA", ("LLL-DDDD",), (245, 245, 245), (20, 30, 90), (20, 30, 90), "Virginia is for lovers"),
    StateStyle("WA", "WASHINGTON", ("LLLDDDD",), (240, 240, 245), (40, 40, 120), (40, 40, 120), "Evergreen State"),
    StateStyle(
        "MA",
        "Massachusetts",
        ("DLLLDD", "DLLDDD"),
        (245, 245, 245),
        (170, 20, 30),
        (30, 30, 110),
        "The Spirit of America",
    ),
    StateStyle("AZ", "ARIZONA", ("LLLDDDD",), (245, 240, 220), (120, 30, 30), (30, 80, 60), "Grand Canyon State"),
    StateStyle("CO", "COLORADO", ("LLL-LDD", "DDD-LLL"), (235, 245, 235), (20, 20, 20), (30, 100, 40), ""),
    StateStyle(
        "MN", "MINNESOTA", ("DDD-LLL", "LLL-DDD"), (240, 240, 250), (20, 40, 120), (20, 40, 120), "10,000 lakes"
    ),
    StateStyle("MD", "MARYLAND", ("DLL DDDD",), (245, 245, 245), (10, 10, 10), (180, 30, 30), "maryland.gov"),
    StateStyle("IN", "INDIANA", ("DDDLLL", "DDDL"), (245, 245, 245), (20, 40, 110), (20, 40, 110), "In God We Trust"),
    StateStyle("TN", "TENNESSEE", ("LDD-DDL", "DDD-LLL"), (235, 240, 250), (20, 30, 90), (20, 30, 90), "tn.gov"),
    StateStyle(
        "NV", "NEVADA", ("DLL DDD", "DDL-DDD"), (230, 235, 245), (20, 40, 120), (20, 40, 120), "The Silver State"
    ),
    StateStyle("OR", "OREGON", ("DDD LLL",), (245, 245, 240), (20, 30, 100), (20, 30, 100), ""),
    StateStyle(
        "CT", "CONNECTICUT", ("LL-DDDDD", "DLLLDD"), (240, 240, 250), (20, 30, 90), (20, 30, 90), "Constitution State"
    ),
    StateStyle("WI", "WISCONSIN", ("LLL-DDDD",), (245, 245, 245), (20, 20, 20), (20, 30, 90), "America's Dairyland"),
    StateStyle("NH", "NEW HAMPSHIRE", ("DDD DDDD",), (245, 245, 245), (30, 80, 40), (30, 80, 40), "Live Free or Die"),
    StateStyle("DE", "DELAWARE", ("DDDDDD",), (30, 50, 110), (235, 200, 90), (235, 200, 90), "The First State"),
    StateStyle("KS", "KANSAS", ("DDD LLL",), (240, 240, 240), (20, 40, 110), (20, 40, 110), ""),
    StateStyle("MO", "MISSOURI", ("LLD-LDL",), (240, 240, 240), (20, 20, 20), (20, 30, 100), "Show-Me State"),
    StateStyle(
        "SC", "SOUTH CAROLINA", ("LLL DDD",), (245, 245, 245), (20, 20, 20), (20, 20, 20), "While I Breathe I Hope"
    ),
    StateStyle("HI", "HAWAII", ("LLL DDD",), (245, 245, 245), (20, 20, 20), (20, 20, 20), "Aloha State"),
)
STATE_CODES: tuple[str, ...] = tuple(s.code for s in STATES)


def plate_text(rng: np.random.Generator, pattern: str) -> tuple[str, str]:
    """Fill a pattern; returns (display text with separators, label text A-Z0-9)."""
    out = []
    for ch in pattern:
        if ch == "L":
            pool = COMMON_LETTERS if rng.random() < 0.93 else LETTERS
            out.append(pool[rng.integers(len(pool))])
        elif ch == "D":
            out.append(DIGITS[rng.integers(10)])
        elif ch == "X":
            out.append((LETTERS + DIGITS)[rng.integers(36)])
        else:
            out.append(ch)
    display = "".join(out)
    return display, "".join(c for c in display if c.isalnum())


def random_pattern(rng: np.random.Generator) -> str:
    """A generic 5-8 character serial (vanity/commercial/other states)."""
    n = int(rng.integers(5, 9))
    return "".join("LDX"[int(i)] for i in rng.choice(3, size=n, p=[0.4, 0.4, 0.2]))


def _jitter(c: tuple[int, int, int], rng: np.random.Generator, amount: int = 18) -> tuple[int, int, int]:
    r, g, b = (int(np.clip(v + rng.integers(-amount, amount + 1), 0, 255)) for v in c)
    return (r, g, b)


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font_path: str, max_w: int, max_h: int) -> ImageFont.FreeTypeFont:
    size = max(8, max_h)
    while size > 8:
        f = _font(font_path, size)
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=f)
        if x1 - x0 <= max_w and y1 - y0 <= max_h:
            return f
        size = int(size * 0.92)
    return _font(font_path, 8)


def _open_fours(timg: Image.Image, text: str, origin: tuple[float, float], font: ImageFont.FreeTypeFont) -> None:
    """Cut the apex of every "4" drawn at ``origin``: the open-top 4 of California-style plate
    fonts, which a closed-4 font never shows (the OCR read it as "L")."""
    draw = ImageDraw.Draw(timg)
    arr = np.asarray(timg).copy()
    for i, ch in enumerate(text):
        if ch != "4":
            continue
        x = origin[0] + font.getlength(text[:i])
        x0, y0, x1, y1 = (int(v) for v in draw.textbbox((x, origin[1]), "4", font=font))
        h = y1 - y0
        foot = arr[y1 - max(2, h // 10) : y1, x0:x1]  # below the crossbar only the stem has ink
        cols = np.nonzero(foot.max(axis=0) > 128)[0]
        if h < 8 or not len(cols):
            continue
        stem_left = x0 + int(cols.min())
        gap = max(2, (x1 - x0) // 12)
        arr[y0 : y0 + int(h * 0.38), x0 : max(x0, stem_left - gap)] = 0
    timg.paste(Image.fromarray(arr))


def _text_image(
    rng: np.random.Generator, display: str, label: str, font_path: str, emblem_state: bool, open_four: bool = False
) -> tuple[Image.Image, list[float]]:
    """White-on-black mask of the plate characters; returns it and x centres of emblem gaps."""
    big = _font(font_path, 120)
    mode = rng.random()
    groups = [g for g in display.replace("-", " ").split(" ") if g]
    if len(groups) > 1 and (emblem_state or mode < 0.3):
        gap_kind = "emblem"
    elif len(groups) > 1 and mode < 0.5:
        gap_kind = "space"
    else:
        text = display if rng.random() < 0.8 else label
        probe = ImageDraw.Draw(Image.new("L", (1, 1)))
        bx0, by0, bx1, by1 = (int(v) for v in probe.textbbox((0, 0), text, font=big))
        timg = Image.new("L", (bx1 - bx0 + 10, by1 - by0 + 10), 0)
        ImageDraw.Draw(timg).text((5 - bx0, 5 - by0), text, font=big, fill=255)
        if open_four:
            _open_fours(timg, text, (5 - bx0, 5 - by0), big)
        return timg, []
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    boxes = [tuple(int(v) for v in probe.textbbox((0, 0), g, font=big)) for g in groups]
    top = min(b[1] for b in boxes)
    bottom = max(b[3] for b in boxes)
    gap = int(120 * (rng.uniform(0.45, 0.8) if gap_kind == "emblem" else rng.uniform(0.2, 0.5)))
    total = sum(b[2] - b[0] for b in boxes) + gap * (len(groups) - 1) + 10
    timg = Image.new("L", (total, bottom - top + 10), 0)
    d = ImageDraw.Draw(timg)
    x = 5
    centres = []
    for i, (g, b) in enumerate(zip(groups, boxes, strict=True)):
        d.text((x - b[0], 5 - top), g, font=big, fill=255)
        if open_four:
            _open_fours(timg, g, (x - b[0], 5 - top), big)
        x += b[2] - b[0]
        if i < len(groups) - 1:
            centres.append(x + gap / 2)
            x += gap
    return timg, centres if gap_kind == "emblem" else []


@dataclass
class RenderedPlate:
    image: np.ndarray  # H x W x 3 RGB uint8, the plate itself (no context)
    text: str  # label: A-Z 0-9
    state: str


def render_plate(rng: np.random.Generator, width: int = 320) -> RenderedPlate:
    """Draw one US-style plate (2:1) with a random state look, text and wear."""
    style = STATES[int(rng.integers(len(STATES)))]
    if rng.random() < 0.75:
        pattern = style.patterns[int(rng.integers(len(style.patterns)))]
    else:
        pattern = random_pattern(rng)
        if rng.random() < 0.3 and len(pattern) <= 7:
            k = int(rng.integers(2, len(pattern) - 1))
            pattern = pattern[:k] + ("-" if rng.random() < 0.5 else " ") + pattern[k:]
    display, label = plate_text(rng, pattern)
    w = width
    h = width // 2
    bg = _jitter(style.bg, rng)
    fg = _jitter(style.fg, rng, 25)
    hd = _jitter(style.header, rng, 25)
    r = rng.random()
    if r < 0.12:  # dark plate, light text (older CA black, DE, specialty)
        bg, fg, hd = _jitter((25, 30, 40), rng), _jitter((235, 220, 150), rng), _jitter((235, 220, 150), rng)
    elif r < 0.25:  # specialty pastel background
        bg = tuple(int(v) for v in rng.integers(150, 256, size=3))  # type: ignore[assignment]
    img = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(img)
    # background graphics: a gradient band or a wave to mimic scenic plates
    if rng.random() < 0.5:
        band = _jitter(tuple(int(v) for v in rng.integers(80, 256, size=3)), rng)  # type: ignore[arg-type]
        y0 = int(h * rng.uniform(0.55, 0.85))
        draw.rectangle([0, y0, w, h], fill=band)
    if rng.random() < 0.3:
        for _ in range(int(rng.integers(1, 4))):
            cx, cy, rr = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(h // 4, h))
            col = _jitter(tuple(int(v) for v in rng.integers(120, 256, size=3)), rng)  # type: ignore[arg-type]
            draw.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], fill=col)
    # header: state name
    hfont_path = header_fonts()[int(rng.integers(len(header_fonts())))]
    name = style.name if rng.random() < 0.9 else style.name.upper()
    if rng.random() < 0.93:
        hf = _fit_text(draw, name, hfont_path, int(w * rng.uniform(0.45, 0.85)), int(h * rng.uniform(0.13, 0.22)))
        tw = draw.textlength(name, font=hf)
        draw.text(((w - tw) / 2, h * rng.uniform(0.02, 0.06)), name, font=hf, fill=hd)
    # slogan at the bottom
    if style.slogan and rng.random() < 0.8:
        sf = _fit_text(draw, style.slogan, hfont_path, int(w * 0.7), int(h * rng.uniform(0.08, 0.14)))
        tw = draw.textlength(style.slogan, font=sf)
        draw.text(((w - tw) / 2, h * rng.uniform(0.82, 0.86)), style.slogan, font=sf, fill=hd)
    # stickers in the corners
    for corner in range(2):
        if rng.random() < 0.5:
            sw, sh = int(w * 0.12), int(h * 0.14)
            x = int(w * 0.04) if corner == 0 else int(w * 0.84)
            y = int(h * rng.uniform(0.04, 0.08)) if rng.random() < 0.5 else int(h * 0.8)
            sticker = tuple(int(v) for v in rng.integers(0, 256, size=3))
            draw.rectangle([x, y, x + sw, y + sh], fill=sticker)
    # main characters, stretched to plate-typical proportions
    font_path = plate_fonts()[int(rng.integers(len(plate_fonts())))]
    char_h = int(h * rng.uniform(0.42, 0.58))
    open_four = rng.random() < (0.7 if style.code == "CA" else 0.25)
    timg, gaps = _text_image(rng, display, label, font_path, style.code == "MO", open_four)
    max_w = int(w * rng.uniform(0.78, 0.93))
    text_w = min(max_w, int(timg.width * char_h / timg.height * rng.uniform(0.8, 1.25)))
    sx = text_w / timg.width
    timg = timg.resize((max(1, text_w), char_h), Image.Resampling.BILINEAR)
    tx = (w - text_w) // 2 + int(rng.integers(-w // 40, w // 40 + 1))
    ty = int(h * rng.uniform(0.22, 0.33))
    if rng.random() < 0.3:  # embossed shadow
        shadow = (int(bg[0] * 0.5), int(bg[1] * 0.5), int(bg[2] * 0.5))
        img.paste(Image.new("RGB", timg.size, shadow), (tx + 2, ty + 2), timg)
    img.paste(Image.new("RGB", timg.size, fg), (tx, ty), timg)
    for gx in gaps:  # a small emblem between character groups (MO, VA, PA, NY ... style)
        ex, ey = tx + gx * sx, ty + char_h * rng.uniform(0.4, 0.6)
        er = char_h * rng.uniform(0.12, 0.25)
        ecol = tuple(int(v) for v in rng.integers(0, 256, size=3))
        shape = rng.random()
        if shape < 0.4:
            draw.rectangle([ex - er, ey - er, ex + er, ey + er], fill=ecol)
        elif shape < 0.7:
            draw.ellipse([ex - er, ey - er * 1.3, ex + er, ey + er * 1.3], fill=ecol)
        else:
            draw.polygon([(ex, ey - er * 1.4), (ex + er, ey + er), (ex - er, ey + er)], fill=ecol)
    # border, frame and bolts
    if rng.random() < 0.7:
        draw.rectangle([1, 1, w - 2, h - 2], outline=_jitter(fg, rng), width=int(rng.integers(1, 5)))
    if rng.random() < 0.45:  # dealer frame covering top/bottom edges
        fc = tuple(int(v) for v in rng.integers(0, 90, size=3))
        th, bh = int(h * rng.uniform(0.0, 0.1)), int(h * rng.uniform(0.05, 0.16))
        draw.rectangle([0, 0, w, th], fill=fc)
        draw.rectangle([0, h - bh, w, h], fill=fc)
        draw.rectangle([0, 0, int(w * 0.03), h], fill=fc)
        draw.rectangle([w - int(w * 0.03), 0, w, h], fill=fc)
    if rng.random() < 0.6:
        br = max(2, w // 45)
        for bx in (int(w * 0.18), int(w * 0.82)):
            by = int(h * 0.1)
            draw.ellipse([bx - br, by - br, bx + br, by + br], fill=(120, 120, 120), outline=(60, 60, 60))
    arr = np.asarray(img, dtype=np.float32)
    # dirt and fading
    if rng.random() < 0.5:
        small = rng.normal(0, rng.uniform(3, 14), size=(h // 10 + 2, w // 10 + 2)).astype(np.float32)
        dirt = np.asarray(Image.fromarray(small, mode="F").resize((w, h), Image.Resampling.BICUBIC))[..., None]
        arr = arr + dirt - rng.uniform(0, 25)
    if rng.random() < 0.3:
        arr = arr * rng.uniform(0.7, 1.0) + rng.uniform(0, 40)
    arr = np.clip(arr, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        arr = np.asarray(Image.fromarray(arr).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0))))
    return RenderedPlate(image=arr, text=label, state=style.code)
