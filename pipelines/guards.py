"""Face and text guards: did a level change a face's identity, or the text, that the bicubic
baseline shows? Both look at the baseline once and cost nothing per level when it has no face
(no text): the metrics registry (``pipelines.metrics``) leaves their scores out then.

Face guard. Faces are found in the baseline with dlib's HOG detector; each gets dlib's ResNet
identity descriptor (128-D; 0.6 apart is dlib's same-person limit on LFW). For a level, the
descriptor is taken again at each baseline face's place (the 5-point landmarks are fitted inside
that box, so a face the detector would miss in the level is still measured), and the level's
``face_distance`` is the largest distance over the faces. ``faces_added`` counts faces the
detector finds in the level away from every baseline face (faces hallucinated in tiles).
Weights: the ``face-recognition-models`` sdist (read from its install folder without importing
it: its ``__init__`` needs ``pkg_resources``), code: the ``dlib-bin`` wheel. Nothing is fetched.

Text guard. RapidOCR (``rapidocr-onnxruntime``, PP-OCRv4 ONNX models inside the wheel) finds
and reads the baseline's text lines; for a level, the same line boxes are cut out of it and read
again, and ``text_cer`` is the character error rate against the baseline's reading: edit
distance over the baseline's characters, spaces ignored (the recogniser's spacing is not
stable). Identical images read identically: 0.

Limits measured in ``bench/guard_thresholds.py`` (numbers in the README, "Face and text guards").
Inputs are PIL images of one size, any mode (converted to RGB).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from pipelines.errors import ModelMissingError

# dlib's own same-person limit, and where our measurements split (README, "Face and text
# guards"): the same person under JPEG, blur up to σ 3 and ×4 from a quarter-size input
# (bicubic or Real-ESRGAN) stays at or below 0.58; different people, compared directly or
# pasted over one another, are 0.65 apart or more.
FACE_DISTANCE_LIMIT = 0.6
FACE_MIN_SCORE = 0.2  # HOG scores below are not faces (a false hit on the astronaut's suit: 0.12)
# Faces are searched on a copy at most this many pixels on its longer side, upsampled once
# by the detector (faces down to ~40 px of that copy): time and memory stay bounded at any size.
FACE_DETECT_SIDE = 1024
FACE_OVERLAP = 0.3  # IoU at or above which a level's face is at a baseline face's place
# Legible text under JPEG, blur and the ×4 paths reads with a CER of at most 0.06 against the
# baseline; one character in five changed reads 0.23, misspelt words 0.18, other text 0.92
# (README, "Face and text guards").
TEXT_CER_LIMIT = 0.1
# Text is found on a copy at most this many pixels on its longer side (PaddleOCR's default
# for this detector), then read from the full-size image: at 2000 px, RapidOCR's own
# default, detection alone took 0.85 GB and 20 s on a 3000×3000 image here.
TEXT_DETECT_SIDE = 960
TEXT_MIN_SIDE = 16  # px of the detector's copy: a thinner image is never text (and cannot be resized to 32)
TEXT_MIN_SCORE = 0.8  # recogniser confidence below which a baseline "line" is not text
TEXT_MIN_CHARS = 2  # shorter readings (stray marks read as one letter) are not text
FACE_MODELS = "face-recognition-models"
FACE_MODELS_FETCH = "pip install face-recognition-models==0.3.0 dlib-bin==20.0.1.post1"

Box = tuple[int, int, int, int]  # left, top, right, bottom (pixels; right/bottom exclusive)


@dataclass(frozen=True)
class Face:
    """A face in the baseline: its ``box`` and its identity ``descriptor`` (128 floats)."""

    box: Box
    descriptor: np.ndarray = field(compare=False, repr=False)


@dataclass(frozen=True)
class TextLine:
    """A line of text in the baseline: its ``quad`` (4 corner points, float32 ``(4, 2)``, as
    RapidOCR's detector gives it) and its ``text`` as read from the baseline."""

    quad: np.ndarray = field(compare=False, repr=False)
    text: str


# --- per-baseline cache: detection runs once per baseline, whichever level asks first ------
_T = TypeVar("_T")
_CACHE_SIZE = 4  # baselines kept (one run scores every level against one baseline)
_cache: OrderedDict[tuple[str, str], Any] = OrderedDict()
_cache_lock = threading.Lock()


def _digest(image: Image.Image) -> str:
    return hashlib.blake2b(
        image.mode.encode() + repr(image.size).encode() + image.tobytes(), digest_size=16
    ).hexdigest()


def _once(kind: str, image: Image.Image, compute: Callable[[Image.Image], _T]) -> _T:
    """``compute(image)``, remembered for the last few baselines (by their pixels)."""
    key = (kind, _digest(image))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]  # type: ignore[no-any-return]
    value = compute(image)
    with _cache_lock:
        _cache[key] = value
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return value


def _rgb(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image.convert("RGB")))


# --- face guard ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _FaceModels:
    detector: Any
    landmarks: Any
    encoder: Any


def _face_model_file(name: str) -> Path:
    try:
        dist = importlib.metadata.distribution(FACE_MODELS)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelMissingError("face_guard", f"the package {FACE_MODELS} is not installed", FACE_MODELS_FETCH) from exc
    path = Path(str(dist.locate_file(f"face_recognition_models/models/{name}")))
    if not path.is_file():
        raise ModelMissingError("face_guard", f"{path} is missing", FACE_MODELS_FETCH)
    return path


_dlib_lock = threading.Lock()  # dlib's network keeps buffers between calls: one caller at a time


@functools.cache
def face_models() -> _FaceModels:
    """dlib's HOG face detector, 5-point landmark model and ResNet identity encoder, loaded
    once from the installed packages. Raises ModelMissingError when they are not installed."""
    try:
        import dlib
    except ImportError as exc:
        raise ModelMissingError("face_guard", "the package dlib-bin is not installed", FACE_MODELS_FETCH) from exc
    return _FaceModels(
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(_face_model_file("shape_predictor_5_face_landmarks.dat"))),
        dlib.face_recognition_model_v1(str(_face_model_file("dlib_face_recognition_resnet_model_v1.dat"))),
    )


def detect_face_boxes(image: Image.Image) -> list[Box]:
    """Boxes of the faces in ``image`` (HOG detector, score ≥ ``FACE_MIN_SCORE``, searched on a
    copy of at most ``FACE_DETECT_SIDE`` px, upsampled once), in ``image``'s pixels, clipped."""
    scale = min(1.0, FACE_DETECT_SIDE / max(image.size))
    small = image
    if scale < 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        small = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    with _dlib_lock:
        rects, scores, _ = face_models().detector.run(_rgb(small), 1, 0.0)
    boxes = []
    for r, s in zip(rects, scores, strict=True):
        if s >= FACE_MIN_SCORE:
            left, top = max(0, round(r.left() / scale)), max(0, round(r.top() / scale))
            right = min(image.width, round((r.right() + 1) / scale))
            bottom = min(image.height, round((r.bottom() + 1) / scale))
            if right > left and bottom > top:
                boxes.append((left, top, right, bottom))
    return boxes


def face_descriptor(rgb: np.ndarray, box: Box) -> np.ndarray:
    """The identity descriptor (128 floats) of the face in ``box`` of ``rgb`` (uint8 ``(H, W, 3)``)."""
    import dlib

    models = face_models()
    rect = dlib.rectangle(box[0], box[1], box[2] - 1, box[3] - 1)
    with _dlib_lock:
        shape = models.landmarks(rgb, rect)
        return np.asarray(models.encoder.compute_face_descriptor(rgb, shape), dtype=np.float64)


def find_faces(image: Image.Image) -> tuple[Face, ...]:
    """The faces of ``image`` with their descriptors (see :func:`detect_face_boxes`)."""
    rgb = _rgb(image)
    return tuple(Face(box, face_descriptor(rgb, box)) for box in detect_face_boxes(image))


def baseline_faces(baseline: Image.Image) -> tuple[Face, ...]:
    """:func:`find_faces` of a baseline, computed once for the last few baselines."""
    return _once("faces", baseline, find_faces)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when apart)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def face_distance(output: Image.Image, faces: Sequence[Face]) -> float:
    """The largest identity distance between a baseline face and ``output`` at that face's place
    (NaN without faces). Same person: below ``FACE_DISTANCE_LIMIT``; another person: above."""
    if not faces:
        return float("nan")
    rgb = _rgb(output)
    return max(float(np.linalg.norm(face_descriptor(rgb, f.box) - f.descriptor)) for f in faces)


def faces_added(output: Image.Image, faces: Sequence[Face]) -> int:
    """How many faces ``output`` has away from every baseline face (IoU < ``FACE_OVERLAP``)."""
    return sum(all(iou(box, f.box) < FACE_OVERLAP for f in faces) for box in detect_face_boxes(output))


# --- text guard ------------------------------------------------------------------------------
@functools.cache
def ocr_engine() -> Any:
    """RapidOCR with the models inside its wheel (loaded once). Raises ModelMissingError when
    ``rapidocr-onnxruntime`` is not installed."""
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as exc:
        raise ModelMissingError(
            "text_guard", "rapidocr-onnxruntime is not installed", "pip install rapidocr-onnxruntime==1.4.4"
        ) from exc
    return RapidOCR(max_side_len=TEXT_DETECT_SIDE)


def _bgr(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(_rgb(image)[..., ::-1])  # the PP-OCR models read OpenCV's BGR


def read_lines(image: Image.Image, quads: Sequence[np.ndarray]) -> list[str]:
    """The text of each ``quads`` region of ``image``, read by the recogniser alone."""
    if not quads:
        return []
    engine = ocr_engine()
    crops = engine.get_crop_img_list(_bgr(image), np.asarray(quads, dtype=np.float32))
    results, _ = engine.text_rec(crops)
    return [str(text) for text, _score in results]


def find_text(image: Image.Image) -> tuple[TextLine, ...]:
    """The text lines of ``image``: detected, then read from the image's own pixels (as levels
    are, so that an identical image reads identically); lines the recogniser is unsure of
    (score < ``TEXT_MIN_SCORE``) or shorter than ``TEXT_MIN_CHARS`` are left out. An image whose
    shorter side would be under ``TEXT_MIN_SIDE`` px in the detector's copy holds no legible
    line (and the detector cannot resize it): none."""
    short, long = sorted(image.size)
    if short * min(1.0, TEXT_DETECT_SIDE / long) < TEXT_MIN_SIDE:
        return ()
    found, _ = ocr_engine()(_bgr(image), use_cls=False)
    if not found:
        return ()
    kept = [
        np.asarray(quad, dtype=np.float32)
        for quad, text, score in found
        if float(score) >= TEXT_MIN_SCORE and len(_squeeze(str(text))) >= TEXT_MIN_CHARS
    ]
    texts = read_lines(image, kept)
    return tuple(TextLine(q, t) for q, t in zip(kept, texts, strict=True) if len(_squeeze(t)) >= TEXT_MIN_CHARS)


def baseline_text(baseline: Image.Image) -> tuple[TextLine, ...]:
    """:func:`find_text` of a baseline, computed once for the last few baselines."""
    return _once("text", baseline, find_text)


def _squeeze(text: str) -> str:
    return "".join(text.split())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions, each 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def text_cer(output: Image.Image, lines: Sequence[TextLine]) -> float:
    """Character error rate of ``output``'s reading at the baseline's line boxes against the
    baseline's reading (spaces ignored; NaN without lines). 0 = the same text; may exceed 1."""
    if not lines:
        return float("nan")
    read = read_lines(output, [line.quad for line in lines])
    errors = sum(edit_distance(_squeeze(line.text), _squeeze(got)) for line, got in zip(lines, read, strict=True))
    return errors / sum(len(_squeeze(line.text)) for line in lines)
