"""Files between Matrix and the workspace: encrypted attachments, and what an idle
transport keeps out of memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ductor.errors import DuctorError
from ductor.transports.matrix import media

REPO = Path(__file__).resolve().parents[2]


def test_an_encrypted_attachment_opens_with_the_key_its_event_carries() -> None:
    ciphertext, file = media.encrypt(b"the report\n", "text/plain")
    assert ciphertext != b"the report\n"
    assert file["mimetype"] == "text/plain" and file["key"]["k"] and file["iv"]
    assert media.decrypt(ciphertext, file) == b"the report\n"


def test_an_encrypted_attachment_that_was_tampered_with_is_refused() -> None:
    ciphertext, file = media.encrypt(b"the report\n", "text/plain")
    with pytest.raises(DuctorError, match="hash"):
        media.decrypt(bytes([ciphertext[0] ^ 1]) + ciphertext[1:], file)
    with pytest.raises(DuctorError, match="cannot be read"):
        media.decrypt(ciphertext, {"iv": file["iv"]})


def test_the_idle_transport_does_not_load_pillow() -> None:
    probe = (
        "import sys, ductor.transports.matrix.main, ductor.transports.matrix.app;"
        "print(sorted(m for m in sys.modules if m == 'PIL' or m.startswith('PIL.')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PYTHONPATH": str(REPO / "lib")},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"
