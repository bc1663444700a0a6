"""Put synthetic plates into scenes and make them look like camera frames.

Perspective, scale, motion blur, noise, JPEG artefacts, night/IR looks and glare.
All randomness comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import cv2
import numpy as np


def warp_plate(
    plate_rgb: np.ndarray, width: int, rng: np.random.Generator, aspect: float | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Scale the plate to ``width`` px and apply a random perspective.

    Returns (BGR patch, float mask 0..1, tight box of the plate inside the patch).
    """
    h0, w0 = plate_rgb.shape[:2]
    height = max(4, round(width * (aspect if aspect else h0 / w0)))
    src = np.array([[0, 0], [w0, 0], [w0, h0], [0, h0]], dtype=np.float32)
    yaw = rng.uniform(-0.25, 0.25)  # horizontal foreshortening of one side
    pitch = rng.uniform(-0.12, 0.12)
    rot = np.deg2rad(rng.uniform(-8, 8))
    pts = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    pts[1, 1] += yaw * height
    pts[2, 1] -= yaw * height
    pts[0, 0] += pitch * width
    pts[1, 0] -= pitch * width
    c = pts.mean(axis=0)
    rmat = np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]], dtype=np.float32)
    pts = (pts - c) @ rmat.T + c
    pts -= pts.min(axis=0)
    out_w = int(np.ceil(pts[:, 0].max())) + 1
    out_h = int(np.ceil(pts[:, 1].max())) + 1
    m = cv2.getPerspectiveTransform(src, pts)
    bgr = cv2.cvtColor(plate_rgb, cv2.COLOR_RGB2BGR)
    interp = cv2.INTER_AREA if width < w0 else cv2.INTER_LINEAR
    patch = cv2.warpPerspective(bgr, m, (out_w, out_h), flags=interp, borderMode=cv2.BORDER_CONSTANT)
    mask = cv2.warpPerspective(
        np.ones((h0, w0), np.float32), m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderValue=0.0
    )
    x1, y1 = pts.min(axis=0)
    x2, y2 = pts.max(axis=0)
    return patch, mask, (int(x1), int(y1), int(np.ceil(x2)), int(np.ceil(y2)))


def paste(frame: np.ndarray, patch: np.ndarray, mask: np.ndarray, x: int, y: int) -> None:
    """Alpha-blend ``patch`` into ``frame`` at (x, y), clipped to the frame, in place."""
    fh, fw = frame.shape[:2]
    ph, pw = patch.shape[:2]
    x1, y1, x2, y2 = max(0, x), max(0, y), min(fw, x + pw), min(fh, y + ph)
    if x2 <= x1 or y2 <= y1:
        return
    sub = patch[y1 - y : y2 - y, x1 - x : x2 - x].astype(np.float32)
    m = mask[y1 - y : y2 - y, x1 - x : x2 - x, None]
    roi = frame[y1:y2, x1:x2].astype(np.float32)
    frame[y1:y2, x1:x2] = (sub * m + roi * (1 - m)).astype(np.uint8)


def match_lighting(patch: np.ndarray, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pull the plate's brightness toward the scene region it is pasted on."""
    if region.size == 0:
        return patch
    target = float(region.mean())
    gain = float(np.clip((0.6 + 0.4 * target / 128.0) * rng.uniform(0.85, 1.15), 0.5, 1.3))
    out: np.ndarray = np.clip(patch.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    return out


def motion_blur(img: np.ndarray, rng: np.random.Generator, max_len: int = 7) -> np.ndarray:
    n = int(rng.integers(2, max_len + 1))
    line = np.zeros((n, n), np.float32)
    line[n // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), float(rng.uniform(0, 180)), 1.0)
    k = np.asarray(cv2.warpAffine(line, rot, (n, n)), dtype=np.float32)
    k = k / max(float(k.sum()), 1e-6)
    return cv2.filter2D(img, -1, k)


def degrade(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Camera look: blur, night/IR, glare, noise, JPEG. Works on frames and crops."""
    out = img
    h, w = out.shape[:2]
    if rng.random() < 0.35 * strength:
        out = motion_blur(out, rng, max_len=max(2, int(min(h, w) / 40) + 3))
    if rng.random() < 0.3 * strength:
        s = rng.uniform(0.4, 1.4)
        out = cv2.GaussianBlur(out, (0, 0), s)
    r = rng.random()
    if r < 0.12 * strength:  # IR camera: grey, bright retro-reflective plates, dark scene
        g = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY).astype(np.float32)
        g = np.clip((g - g.mean()) * rng.uniform(1.2, 2.0) + rng.uniform(60, 140), 0, 255)
        out = cv2.cvtColor(g.astype(np.uint8), cv2.COLOR_GRAY2BGR)
    elif r < 0.25 * strength:  # night: dark, warm light
        f = out.astype(np.float32) * rng.uniform(0.25, 0.6)
        f[..., 2] *= rng.uniform(1.0, 1.3)
        out = np.clip(f, 0, 255).astype(np.uint8)
    elif r < 0.42:  # washed out, low contrast (haze, overexposed IR, dirty lens)
        f = out.astype(np.float32)
        m = float(f.mean())
        f = (f - m) * rng.uniform(0.2, 0.55) + m * rng.uniform(0.5, 1.1)
        if rng.random() < 0.6:
            f = f.mean(axis=2, keepdims=True).repeat(3, axis=2) * 0.7 + f * 0.3
        out = np.clip(f, 0, 255).astype(np.uint8)
    elif r < 0.6:
        f = out.astype(np.float32) * rng.uniform(0.6, 1.35) + rng.uniform(-30, 30)
        out = np.clip(f, 0, 255).astype(np.uint8)
    if rng.random() < 0.12 * strength:  # glare spot
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rad = rng.uniform(0.1, 0.5) * max(h, w)
        yy, xx = np.mgrid[0:h, 0:w]
        spot = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * rad * rad)))[..., None]
        out = np.clip(out.astype(np.float32) + spot * rng.uniform(60, 200), 0, 255).astype(np.uint8)
    if rng.random() < 0.5 * strength:
        noise = rng.normal(0, rng.uniform(2, 12), size=out.shape)
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.7:
        q = int(rng.integers(25, 90))
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q])
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        if decoded is not None:
            out = decoded
    return out
