"""Files between Telegram and the workspace: where they land, what they are called, images.

Incoming files go to ``workspace/telegram_files/YYYY-MM-DD/`` under a name that is safe
to use as one path component (:func:`safe_name`, :func:`unique_path`), and
``telegram_files/_index.json`` lists them for the agent (:func:`update_index`). Images
are normalised before the agent sees them (:func:`process_image`): the EXIF orientation
applied, the longer side cut to ``image.max_dimension``, converted to
``image.output_format``. Image work is bounded: an image of more than
``image.max_megapixels`` is refused from its header (:class:`ImageTooLarge`), a JPEG is
decoded at a reduced scale, and one image is processed at a time per process. Outgoing
files go as photos when Telegram will take them as such (:func:`is_photo`), else as
documents.

Pillow is imported here, python-telegram-bot is not: the transport does the network.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import threading
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ductor.atomic import (
    CorruptFileError,
    make_directories,
    read_json,
    replace_file,
    write_json,
    write_temp_file,
)
from ductor.config.schema import ImageConfig
from ductor.errors import DuctorError

if TYPE_CHECKING:  # Pillow (~2.4 MB) is imported by the functions that use it, on first use
    from PIL import Image

log = logging.getLogger(__name__)

FILES_DIR = "telegram_files"
INDEX_NAME = "_index.json"
MAX_NAME_CHARS = 120
# Most filesystems allow 255 bytes per name; leave room for " (99)" and temp prefixes.
MAX_NAME_BYTES = 200
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # getFile refuses anything larger (Bot API)
MAX_PHOTO_BYTES = 10 * 1024 * 1024  # sendPhoto's limit; larger images go as documents
# sendPhoto also wants width + height <= 10000 and a ratio of at most 20.
MAX_PHOTO_SIDES = 10_000
MAX_PHOTO_RATIO = 20
PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})

_EXTENSION = re.compile(r"(?:\.[A-Za-z0-9]{1,4})?\.[^.\s]{1,16}$")
_FORMATS = {"webp": ("WEBP", ".webp"), "jpeg": ("JPEG", ".jpg"), "png": ("PNG", ".png")}


class FileTooBig(DuctorError):
    """A file larger than the bot may download."""

    def __init__(self, size: int, limit: int = MAX_DOWNLOAD_BYTES) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"That file is {_megabytes(size)}; Telegram lets a bot download at most"
            f" {_megabytes(limit)}. Send a smaller file, or put it somewhere the agent can"
            " fetch it and send the link."
        )


class ImageTooLarge(DuctorError):
    """An image with more pixels than ``image.max_megapixels``: decoding it would take
    far more memory than the file's size suggests."""

    def __init__(self, width: int, height: int, limit: int) -> None:
        size = f"{width}x{height} pixels ({width * height / 1e6:.1f} megapixels)"
        if not width or not height:
            size = "a decompression bomb"
        super().__init__(
            f"That image is {size}; images of up to {limit} megapixels are taken"
            " (image.max_megapixels). Scale it down and send it again."
        )


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def check_size(size: int | None) -> None:
    """Raise :class:`FileTooBig` when Telegram says the file is too large to download.

    An unknown size (None) passes: the download itself will tell.
    """
    if size is not None and size > MAX_DOWNLOAD_BYTES:
        raise FileTooBig(size)


# --- Where incoming files land ------------------------------------------------------------


def files_root(workspace: Path) -> Path:
    return workspace / FILES_DIR


def incoming_dir(workspace: Path, now: datetime) -> Path:
    """``workspace/telegram_files/YYYY-MM-DD/`` for ``now``'s date, created 0700."""
    directory = files_root(workspace) / f"{now:%Y-%m-%d}"
    make_directories(directory, mode=0o700)
    return directory


def _clean_characters(name: str) -> str:
    # Control and format characters (NUL, newlines, bidi overrides that make
    # "exe.txt" read as "txt.exe") go; every other character, any script, stays.
    kept = (
        " " if char.isspace() else char
        for char in name
        if unicodedata.category(char) not in ("Cc", "Cf", "Cs") or char.isspace()
    )
    return " ".join("".join(kept).split())


def _shorten(name: str) -> str:
    # The extension is what a shortened name must keep: ".pdf", also ".tar.gz".
    match = _EXTENSION.search(name)
    stem, extension = (name[: match.start()], match.group()) if match else (name, "")
    if not stem:
        stem, extension = name, ""

    def fits(candidate: str) -> bool:
        return len(candidate) <= MAX_NAME_CHARS and len(candidate.encode()) <= MAX_NAME_BYTES

    if fits(name):
        return name
    while stem and not fits(stem + extension):
        stem = stem[:-1]
    stem = stem.rstrip(" .")
    return stem + extension if stem else extension.lstrip(".")[:MAX_NAME_CHARS]


def safe_name(name: str, *, fallback: str) -> str:
    """``name`` as one harmless file name: no directories, no control characters, no
    leading dots (hidden files, ``..``), at most 120 characters keeping the extension.

    Letters of any script are kept. ``fallback`` (itself cleaned the same way) is used
    when nothing usable is left. Collisions are the caller's: see :func:`unique_path`.
    """
    for candidate in (name, fallback):
        base = candidate.replace("\\", "/").rsplit("/", 1)[-1]
        cleaned = _shorten(_clean_characters(base).lstrip(". ").rstrip(" "))
        if cleaned and cleaned not in (".", ".."):
            return cleaned
    return "file"


def unique_path(directory: Path, name: str) -> Path:
    """``directory/name``, or ``name (2).ext``, ``name (3).ext``... if that is taken.

    The caller should still create the file exclusively: two downloads of one name in
    the same instant could both be handed the same free path.
    """
    candidate = directory / name
    if not candidate.exists() and not candidate.is_symlink():
        return candidate
    stem, suffix = candidate.stem, candidate.suffix
    number = 2
    while True:
        candidate = directory / f"{stem} ({number}){suffix}"
        if not candidate.exists() and not candidate.is_symlink():
            return candidate
        number += 1


# --- The index the agent reads ------------------------------------------------------------


def index_entry(path: Path, kind: str, size: int, received: datetime) -> dict[str, object]:
    """One file as ``_index.json`` lists it."""
    return {
        "name": path.name,
        "type": kind,
        "size": size,
        "received": received.astimezone(UTC).isoformat(timespec="seconds"),
    }


def _read_tree(index: Path) -> dict[str, list[dict[str, object]]]:
    try:
        document = read_json(index)
    except FileNotFoundError:
        return {}
    except (OSError, CorruptFileError) as exc:
        log.warning("%s: unreadable, starting a new index: %s", index, exc)
        return {}
    tree = document.get("tree") if isinstance(document, Mapping) else None
    if not isinstance(tree, Mapping):
        log.warning("%s: no 'tree' object, starting a new index", index)
        return {}
    return {
        str(day): [dict(entry) for entry in entries if isinstance(entry, Mapping)]
        for day, entries in tree.items()
        if isinstance(entries, list)
    }


def update_index(
    root: Path, path: Path, kind: str, size: int, *, now: datetime | None = None
) -> dict[str, object]:
    """Add ``path`` (``root/YYYY-MM-DD/name``) to ``root/_index.json``; returns the index.

    The file is replaced atomically. Entries whose file is gone (cleanup, the agent
    moved it) are dropped at the same time, so ``total_files`` stays true. The
    transport calls this from its event loop, one update at a time.
    """
    now = now or datetime.now(UTC)
    relative = path.relative_to(root)
    if len(relative.parts) != 2:
        raise ValueError(f"{path} is not a file in a day directory of {root}")
    day = relative.parts[0]
    index = root / INDEX_NAME
    tree = _read_tree(index)
    entries = [entry for entry in tree.get(day, []) if entry.get("name") != path.name]
    entries.append(index_entry(path, kind, size, now))
    tree[day] = entries
    pruned = {
        day_name: kept
        for day_name, day_entries in sorted(tree.items())
        if (
            kept := [
                entry
                for entry in day_entries
                if isinstance(entry.get("name"), str)
                and (root / day_name / str(entry["name"])).exists()
            ]
        )
    }
    document: dict[str, object] = {
        "last_updated": now.astimezone(UTC).isoformat(timespec="seconds"),
        "total_files": sum(len(day_entries) for day_entries in pruned.values()),
        "tree": pruned,
    }
    write_json(index, document)
    return document


# --- Images -------------------------------------------------------------------------------


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )


def _for_format(image: Image.Image, output_format: str) -> Image.Image:
    alpha = _has_alpha(image)
    if output_format == "jpeg":
        if not alpha:
            return image.convert("RGB")
        # JPEG has no transparency: what was see-through becomes white, not black.
        rgba = image.convert("RGBA")
        from PIL import Image

        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if output_format == "png" and image.mode in ("1", "L", "LA", "P", "RGB", "RGBA"):
        return image
    return image.convert("RGBA" if alpha else "RGB")


def _encode(image: Image.Image, output_format: str, quality: int) -> bytes:
    pil_format, _ = _FORMATS[output_format]
    buffer = io.BytesIO()
    if output_format == "png":
        image.save(buffer, pil_format, optimize=True)  # lossless: quality does not apply
    elif output_format == "jpeg":
        image.save(buffer, pil_format, quality=quality, optimize=True)
    else:
        image.save(buffer, pil_format, quality=quality, method=4)
    return buffer.getvalue()


def _open(path: Path, config: ImageConfig) -> Image.Image:
    """The image at ``path``, its header read and its size checked (nothing decoded)."""
    from PIL import Image

    try:
        opened = Image.open(path)
    except Image.DecompressionBombError:  # more than twice Pillow's own limit
        raise ImageTooLarge(0, 0, config.max_megapixels) from None
    width, height = opened.size
    if width * height > config.max_megapixels * 1_000_000:
        opened.close()
        raise ImageTooLarge(width, height, config.max_megapixels)
    return opened


def _converted(path: Path, config: ImageConfig) -> tuple[bytes, str] | None:
    """The new image's bytes and suffix, or None when the file is fine as it is."""
    from PIL import Image, ImageOps

    pil_format, suffix = _FORMATS[config.output_format]
    with _open(path, config) as opened:
        width, height = opened.size
        if getattr(opened, "is_animated", False):
            return None  # GIF, APNG, animated WebP: converting would freeze them
        orientation = opened.getexif().get(0x0112, 1)  # EXIF Orientation
        too_big = max(width, height) > config.max_dimension
        if opened.format == pil_format and not too_big and orientation in (1, None):
            return None
        if too_big and opened.format == "JPEG":
            # Decode at 1/2, 1/4 or 1/8 scale, never below the size wanted.
            opened.draft("RGB", (config.max_dimension, config.max_dimension))
        opened.load()
        image: Image.Image = opened
        if max(image.size) > config.max_dimension:
            # Shrinks in place, by whole factors first: no full-size copy is made.
            bound = (config.max_dimension, config.max_dimension)
            image.thumbnail(bound, Image.Resampling.LANCZOS, reducing_gap=3.0)
        # Turned after shrinking (the longer side stays the longer side): a small copy.
        image = ImageOps.exif_transpose(image)
    return _encode(
        _for_format(image, config.output_format), config.output_format, config.quality
    ), suffix


# Decoding is where the memory goes: one image at a time, however many chats send some.
_DECODING = threading.Lock()


def process_image(path: Path, config: ImageConfig) -> Path:
    """Orient, shrink and convert the image at ``path``; returns where the result is.

    The result is ``<stem>.<ext>`` next to the original (``<stem> (2).<ext>`` if another
    file has that name); the original is removed only after the result is safely
    written. EXIF data other than the orientation is not carried over (it can hold the
    place a photo was taken). An image of more than ``config.max_megapixels`` (and any
    decompression bomb) is removed and :class:`ImageTooLarge` raised, for the user to
    be told. Anything else that is not a readable image, including truncated files, is
    logged and left untouched: the path itself is returned. Animated images and images
    already in shape are left as well.
    """
    try:
        with _DECODING:
            converted = _converted(path, config)
        if converted is None:
            return path
        data, suffix = converted
        target = path.with_suffix(suffix)
        if target != path:
            target = unique_path(path.parent, target.name)
        temp = write_temp_file(path.parent, data, name=target.name)
        replace_file(temp, target)
    except ImageTooLarge:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    except Exception as exc:  # Pillow's decoders raise many kinds on hostile input
        log.warning("%s: keeping the file as it is, image processing failed: %s", path, exc)
        return path
    if target != path:
        try:
            path.unlink()
        except OSError as exc:
            log.warning("%s: converted to %s but could not remove it: %s", path, target, exc)
    return target


# --- Outgoing files -----------------------------------------------------------------------


def is_photo(path: Path) -> bool:
    """Whether Telegram will take ``path`` as a photo (else send it as a document)."""
    if path.suffix.lower() not in PHOTO_SUFFIXES:
        return False
    try:
        if path.stat().st_size > MAX_PHOTO_BYTES:
            return False
        from PIL import Image

        with Image.open(path) as image:  # reads the header only
            width, height = image.size
    except Exception:  # not an image after all: a document then
        return False
    return (
        width > 0
        and height > 0
        and width + height <= MAX_PHOTO_SIDES
        and max(width, height) / min(width, height) <= MAX_PHOTO_RATIO
    )
