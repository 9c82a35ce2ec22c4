"""ductor.transports.telegram.media: where incoming files land, their names, images."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from ductor.config.schema import ImageConfig
from ductor.transports.telegram import media
from ductor.transports.telegram.media import (
    MAX_DOWNLOAD_BYTES,
    FileTooBig,
    ImageTooLarge,
    check_size,
    incoming_dir,
    is_photo,
    process_image,
    safe_name,
    unique_path,
    update_index,
)

NOW = datetime(2025, 11, 21, 7, 30, tzinfo=UTC)


def noisy_image(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """An image that does not compress to nothing, so quality makes a difference."""
    image = Image.effect_noise(size, 64).convert("RGB")
    gradient = Image.linear_gradient("L").resize(size)
    image = Image.merge(
        "RGB", (image.getchannel(0), gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    )
    if mode == "RGBA":
        image.putalpha(gradient)
    return image


# --- incoming_dir, safe_name, unique_path -------------------------------------------


def test_incoming_dir_is_a_private_day_directory_under_telegram_files(tmp_path: Path) -> None:
    directory = incoming_dir(tmp_path, NOW)
    assert directory == tmp_path / "telegram_files" / "2025-11-21"
    assert directory.is_dir()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert incoming_dir(tmp_path, NOW) == directory  # a second file the same day


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\notes.txt", "notes.txt"),
        ("..", "fallback.bin"),
        ("...hidden", "hidden"),
        (".bashrc", "bashrc"),
        ("bad\x00name\nwith\rcontrols.txt", "badname with controls.txt"),
        ("evil\u202etxt.exe", "eviltxt.exe"),
        ("Привет мир.docx", "Привет мир.docx"),
        ("写真 2025.jpg", "写真 2025.jpg"),
        ("  spaced   out  .md", "spaced out .md"),
        ("", "fallback.bin"),
        ("dir/", "fallback.bin"),
    ],
)
def test_safe_name_keeps_one_harmless_component(name: str, expected: str) -> None:
    assert safe_name(name, fallback="fallback.bin") == expected


def test_safe_name_shortens_long_names_keeping_the_extension() -> None:
    name = safe_name("a" * 300 + ".tar.gz", fallback="x")
    assert len(name) == 120
    assert name.endswith("a.tar.gz")


def test_safe_name_bounds_the_bytes_of_wide_characters() -> None:
    name = safe_name("😀" * 100 + ".png", fallback="x")
    assert name.endswith(".png")
    assert len(name.encode()) <= 200
    assert len(name) <= 120


def test_safe_name_cleans_the_fallback_too() -> None:
    assert safe_name("..", fallback="../photo_1.jpg") == "photo_1.jpg"


def test_unique_path_numbers_collisions(tmp_path: Path) -> None:
    assert unique_path(tmp_path, "a.txt") == tmp_path / "a.txt"
    (tmp_path / "a.txt").write_text("1")
    assert unique_path(tmp_path, "a.txt") == tmp_path / "a (2).txt"
    (tmp_path / "a (2).txt").write_text("2")
    assert unique_path(tmp_path, "a.txt") == tmp_path / "a (3).txt"
    (tmp_path / "noext").write_text("3")
    assert unique_path(tmp_path, "noext") == tmp_path / "noext (2)"


# --- check_size ---------------------------------------------------------------------


def test_check_size_refuses_more_than_telegram_lets_a_bot_download() -> None:
    check_size(None)
    check_size(MAX_DOWNLOAD_BYTES)
    with pytest.raises(FileTooBig, match=r"25\.0 MB.*at most 20\.0 MB"):
        check_size(25 * 1024 * 1024)


# --- process_image ------------------------------------------------------------------


def test_large_rgba_png_becomes_a_webp_within_the_limit_with_alpha_and_aspect(
    tmp_path: Path,
) -> None:
    original = tmp_path / "shot.png"
    noisy_image((3000, 1000), "RGBA").save(original)
    result = process_image(original, ImageConfig())
    assert result == tmp_path / "shot.webp"
    assert not original.exists()
    with Image.open(result) as image:
        assert image.format == "WEBP"
        assert image.size == (2000, 667)
        assert image.mode == "RGBA"


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    original = tmp_path / "phone.jpg"
    image = Image.new("RGB", (400, 200), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    image.save(original, exif=exif)
    result = process_image(original, ImageConfig(output_format="jpeg"))
    with Image.open(result) as rotated:
        assert rotated.size == (200, 400)
        assert rotated.getexif().get(0x0112) in (None, 1)


def test_jpeg_output_flattens_transparency_on_white(tmp_path: Path) -> None:
    original = tmp_path / "clear.png"
    Image.new("RGBA", (50, 50), (0, 0, 0, 0)).save(original)
    result = process_image(original, ImageConfig(output_format="jpeg"))
    assert result.suffix == ".jpg"
    with Image.open(result) as image:
        assert image.mode == "RGB"
        red, green, blue = image.convert("RGB").getpixel((25, 25))  # type: ignore[misc]
        assert min(red, green, blue) > 240


def test_png_output_is_lossless(tmp_path: Path) -> None:
    original = tmp_path / "picture.jpg"
    noisy_image((300, 200)).save(original, quality=95)
    with Image.open(original) as before:
        pixels = before.convert("RGB").tobytes()
    result = process_image(original, ImageConfig(output_format="png"))
    assert result == tmp_path / "picture.png"
    with Image.open(result) as image:
        assert image.format == "PNG"
        assert image.convert("RGB").tobytes() == pixels


def test_quality_is_applied(tmp_path: Path) -> None:
    sizes = {}
    for quality in (20, 95):
        original = tmp_path / f"q{quality}.png"
        noisy_image((600, 400)).save(original)
        result = process_image(original, ImageConfig(quality=quality))
        sizes[quality] = result.stat().st_size
    assert sizes[95] > sizes[20] * 1.5


def test_an_image_already_in_shape_is_left_alone(tmp_path: Path) -> None:
    original = tmp_path / "small.webp"
    noisy_image((100, 100)).save(original, quality=85)
    before = original.read_bytes()
    assert process_image(original, ImageConfig()) == original
    assert original.read_bytes() == before


def test_animated_gif_is_not_frozen(tmp_path: Path) -> None:
    original = tmp_path / "anim.gif"
    frames = [Image.new("P", (3000, 100), colour) for colour in (1, 2)]
    frames[0].save(original, save_all=True, append_images=frames[1:], duration=100)
    assert process_image(original, ImageConfig()) == original
    assert original.exists()


def test_converting_does_not_overwrite_a_different_file_with_the_target_name(
    tmp_path: Path,
) -> None:
    (tmp_path / "cat.webp").write_bytes(b"someone else's file")
    original = tmp_path / "cat.png"
    noisy_image((64, 64)).save(original)
    result = process_image(original, ImageConfig())
    assert result == tmp_path / "cat (2).webp"
    assert (tmp_path / "cat.webp").read_bytes() == b"someone else's file"


@pytest.mark.parametrize(
    "content",
    [b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40],
    ids=["garbage", "broken-png"],
)
def test_a_file_that_is_not_an_image_is_kept_as_it_is(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    original = tmp_path / "photo.jpg"
    original.write_bytes(content)
    assert process_image(original, ImageConfig()) == original
    assert original.read_bytes() == content
    assert list(tmp_path.iterdir()) == [original]
    assert "image processing failed" in caplog.text


def test_a_truncated_image_is_kept_as_it_is(tmp_path: Path) -> None:
    original = tmp_path / "cut.jpg"
    noisy_image((800, 600)).save(original, quality=90)
    data = original.read_bytes()[:5000]
    original.write_bytes(data)
    assert process_image(original, ImageConfig()) == original
    assert original.read_bytes() == data


def test_a_decompression_bomb_is_refused_and_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = tmp_path / "bomb.png"
    Image.new("L", (400, 400)).save(original)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)
    with pytest.raises(ImageTooLarge, match="decompression bomb"):
        process_image(original, ImageConfig())
    assert not original.exists()
    assert not (tmp_path / "bomb.webp").exists()


def test_an_image_over_max_megapixels_is_refused_from_its_header_with_its_size(
    tmp_path: Path,
) -> None:
    original = tmp_path / "huge.png"
    Image.new("1", (9400, 9400)).save(original)  # 1 bit a pixel here, 4 bytes decoded
    with pytest.raises(ImageTooLarge) as refused:
        process_image(original, ImageConfig(max_megapixels=50))
    message = str(refused.value)
    assert "9400x9400" in message and "88.4 megapixels" in message
    assert "image.max_megapixels" in message
    assert not original.exists()


def test_an_image_under_max_megapixels_is_shrunk_as_before(tmp_path: Path) -> None:
    original = tmp_path / "big.jpg"
    Image.new("RGB", (6000, 3000), (200, 10, 10)).save(original, quality=50)
    result = process_image(original, ImageConfig(max_megapixels=20, max_dimension=1000))
    with Image.open(result) as image:
        assert image.size == (1000, 500)


# --- the index ----------------------------------------------------------------------


def test_update_index_lists_files_by_day(tmp_path: Path) -> None:
    root = tmp_path / "telegram_files"
    day = incoming_dir(tmp_path, NOW)
    first = day / "a.pdf"
    first.write_bytes(b"x" * 10)
    update_index(root, first, "document", 10, now=NOW)
    second = day / "photo_1.webp"
    second.write_bytes(b"y" * 3)
    document = update_index(root, second, "photo", 3, now=NOW)
    on_disk = json.loads((root / "_index.json").read_text())
    assert on_disk == document
    assert on_disk["total_files"] == 2
    assert on_disk["last_updated"] == "2025-11-21T07:30:00+00:00"
    assert on_disk["tree"] == {
        "2025-11-21": [
            {"name": "a.pdf", "type": "document", "size": 10,
             "received": "2025-11-21T07:30:00+00:00"},
            {"name": "photo_1.webp", "type": "photo", "size": 3,
             "received": "2025-11-21T07:30:00+00:00"},
        ]
    }  # fmt: skip
    assert stat.S_IMODE((root / "_index.json").stat().st_mode) == 0o600


def test_update_index_drops_files_that_are_gone_and_survives_a_corrupt_index(
    tmp_path: Path,
) -> None:
    root = tmp_path / "telegram_files"
    day = incoming_dir(tmp_path, NOW)
    old = day / "old.txt"
    old.write_text("old")
    update_index(root, old, "document", 3, now=NOW)
    old.unlink()
    (root / "_index.json").write_text("{not json")
    new = day / "new.txt"
    new.write_text("new")
    document = update_index(root, new, "document", 3, now=NOW)
    assert document["total_files"] == 1
    tree = document["tree"]
    assert isinstance(tree, dict)
    assert [entry["name"] for entry in tree["2025-11-21"]] == ["new.txt"]


def test_update_index_refuses_a_file_outside_a_day_directory(tmp_path: Path) -> None:
    root = tmp_path / "telegram_files"
    with pytest.raises(ValueError, match="day directory"):
        update_index(root, root / "loose.txt", "document", 1)


# --- outgoing ------------------------------------------------------------------------


def test_is_photo_for_small_images_with_photo_extensions(tmp_path: Path) -> None:
    photo = tmp_path / "chart.png"
    noisy_image((400, 300)).save(photo)
    assert is_photo(photo)
    webp = tmp_path / "chart.webp"
    noisy_image((400, 300)).save(webp)
    assert is_photo(webp)


def test_is_photo_is_false_for_documents_big_files_and_odd_shapes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(b"%PDF-1.4")
    assert not is_photo(pdf)
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"not a jpeg")
    assert not is_photo(fake)
    banner = tmp_path / "banner.png"
    Image.new("RGB", (4200, 100)).save(banner)  # ratio 42: Telegram refuses the photo
    assert not is_photo(banner)
    photo = tmp_path / "ok.jpg"
    noisy_image((200, 200)).save(photo)
    monkeypatch.setattr(media, "MAX_PHOTO_BYTES", 100)
    assert not is_photo(photo)
    assert not is_photo(tmp_path / "missing.jpg")
