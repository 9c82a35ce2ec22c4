"""Files between Matrix and the workspace.

Incoming media (``m.image``, ``m.audio``, ``m.video``, ``m.file``) is downloaded through
the authenticated media API and saved under ``workspace/matrix_files/YYYY-MM-DD/`` with
the harmless names, the image processing and the limits of the Telegram transport's
media module (it is messenger-neutral apart from its directory name). In encrypted rooms
files travel encrypted both ways (AES-CTR with the key in the event, as Element does).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from nio.crypto.attachments import decrypt_attachment, encrypt_attachment
from nio.exceptions import EncryptionError

from ductor.atomic import make_directories
from ductor.config.schema import ImageConfig
from ductor.errors import DuctorError

__all__ = [
    "FILES_DIR",
    "FileTooBig",
    "check_size",
    "check_upload_size",
    "decrypt",
    "encrypt",
    "incoming_dir",
    "msgtype_for",
    "process_image",
    "save_incoming",
]

FILES_DIR = "matrix_files"
MAX_DOWNLOAD_BYTES = 100 * 1024 * 1024
MAX_UPLOAD_BYTES = 100 * 1024 * 1024  # Synapse's default max_upload_size is 50M; ask it


class FileTooBig(DuctorError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"that file is {size / 2**20:.1f} MB; the limit is {limit // 2**20} MB")


def check_size(size: int | None) -> None:
    if size is not None and size > MAX_DOWNLOAD_BYTES:
        raise FileTooBig(size, MAX_DOWNLOAD_BYTES)


def check_upload_size(size: int) -> None:
    if size > MAX_UPLOAD_BYTES:
        raise FileTooBig(size, MAX_UPLOAD_BYTES)


def incoming_dir(workspace: Path, now: datetime) -> Path:
    """``workspace/matrix_files/YYYY-MM-DD/`` for ``now``'s date, created 0700."""
    directory = workspace / FILES_DIR / f"{now:%Y-%m-%d}"
    make_directories(directory, mode=0o700)
    return directory


def save_incoming(workspace: Path, now: datetime, name: str, data: bytes, *, fallback: str) -> Path:
    """Write ``data`` under a safe, unused name in today's directory; its path."""
    directory = incoming_dir(workspace, now)
    # Imported with the first file, not at start: the module brings Pillow, 2 MB of an
    # idle transport's memory that most days never need.
    from ductor.transports.telegram.media import safe_name, unique_path

    target = unique_path(directory, safe_name(name, fallback=fallback))
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    return target


def process_image(path: Path, config: ImageConfig) -> Path:
    """Orient, shrink and convert an incoming image (the Telegram transport's rules)."""
    from ductor.transports.telegram.media import process_image as process  # Pillow: lazily

    return process(path, config)


def msgtype_for(mime: str) -> str:
    """The Matrix message type of a file of type ``mime``."""
    for prefix, msgtype in (("image/", "m.image"), ("audio/", "m.audio"), ("video/", "m.video")):
        if mime.startswith(prefix):
            return msgtype
    return "m.file"


def encrypt(data: bytes, mime: str) -> tuple[bytes, dict[str, Any]]:
    """An attachment for an encrypted room: the ciphertext to upload and the event's
    ``file`` object without its ``url`` (key, iv, hashes, version, mimetype)."""
    ciphertext, keys = encrypt_attachment(data)
    return ciphertext, {**keys, "mimetype": mime}


def decrypt(ciphertext: bytes, file: Mapping[str, Any]) -> bytes:
    """The plain bytes of an encrypted attachment (its event's ``file`` object); raises
    DuctorError when the object is malformed or the hash does not match."""
    try:
        key = file["key"]["k"]
        digest = file["hashes"]["sha256"]
        iv = file["iv"]
        plain: bytes = decrypt_attachment(ciphertext, key, digest, iv)
    except (KeyError, TypeError, ValueError) as exc:
        raise DuctorError(f"the encrypted file cannot be read: {exc}") from exc
    except EncryptionError as exc:
        raise DuctorError(f"the encrypted file does not match its hash: {exc}") from exc
    return plain
