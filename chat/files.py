"""What an uploaded file is, from its content (never its name): an image Pillow decodes, a PDF pypdf
reads, or UTF-8 text. Images are re-encoded without their metadata (EXIF: camera, place) and get a
thumbnail; a PDF's text is extracted once, here. No database access: chat.services.attachments stores."""

import codecs
import io
import re
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

from django.core.files.storage import Storage, storages
from django.utils.translation import gettext as _
from PIL import Image, ImageOps, UnidentifiedImageError
from pypdf import PdfReader
from pypdf.errors import PyPdfError

from chat.errors import ChatError

# Pillow's formats we accept, and the MIME type each is served as.
IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
# An image over this many pixels is refused before it is decoded (a decompression bomb: a small file
# that unpacks to gigabytes).
MAX_IMAGE_PIXELS = 25_000_000
THUMBNAIL_SIZE = (480, 480)
# Text files by extension; the content must still be UTF-8. Markup a browser would run is never text.
TEXT_TYPES = {".md": "text/markdown", ".markdown": "text/markdown", ".csv": "text/csv", ".json": "application/json"}
NEVER_TEXT = {".html", ".htm", ".xhtml", ".svg", ".xml", ".xsl", ".shtml", ".mht", ".mhtml"}
# Names that claim a binary type: text under such a name is refused (it is not what it says).
BINARY_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".pdf", ".bmp", ".tif", ".tiff", ".ico"}
# Content a browser would take for a web page or an SVG image, whatever the name says.
MARKUP = re.compile(rb"^\s*(<!doctype\s+html|<html|<svg|<\?xml|<script|<head|<body|<iframe)", re.I)
# Only the head of a file is sniffed for text before it is read whole.
SNIFF_BYTES = 8192


def attachment_storage() -> Storage:
    """Where attachment files live: settings.STORAGES["attachments"] (the filesystem, or S3)."""
    return storages["attachments"]


def read_file(name: str) -> bytes:
    """A stored file's bytes (an image or PDF on its way to a model: at most the upload limit)."""
    with attachment_storage().open(name, "rb") as stored:
        return stored.read()


@dataclass(frozen=True)
class Inspected:
    """An accepted file: its kind and type, the bytes to store (an image re-encoded), a thumbnail, text."""

    kind: str  # image, pdf, text (chat.models.Attachment.Kind)
    mime: str
    extension: str
    content: IO[bytes]
    thumbnail: bytes = b""
    width: int | None = None
    height: int | None = None
    text: str = ""


def unsupported(detail: str) -> ChatError:
    return ChatError("unsupported_file", _("This file cannot be attached: %(detail)s") % {"detail": detail})


def safe_name(name: str) -> str:
    """The uploaded name as it may be shown: no folders, no control characters, at most 200 characters."""
    name = unicodedata.normalize("NFC", PurePosixPath(name.replace("\\", "/")).name)
    name = re.sub(r"[\x00-\x1f\x7f<>:\"/\\|?*]", "_", name).strip(" .")
    return (name or "file")[-200:]


def inspect(upload: IO[bytes], *, name: str, size: int, kinds: list[str], max_text_chars: int) -> Inspected:
    """The file's kind from its first bytes, checked whole; `unsupported_file` for anything else."""
    if size == 0:
        raise unsupported(_("it is empty."))
    upload.seek(0)
    head = upload.read(SNIFF_BYTES)
    upload.seek(0)
    if head.startswith(b"%PDF-"):
        found = _pdf(upload, max_text_chars)
    elif _looks_like_image(head):
        found = _image(upload)
    elif _is_text(head):
        found = _text(upload, name=name, max_text_chars=max_text_chars)
    else:
        raise unsupported(_("its content is not a PNG, JPEG, WebP or GIF image, a PDF or UTF-8 text."))
    if found.kind not in kinds:
        raise unsupported(_("this server does not accept files of kind %(kind)s.") % {"kind": found.kind})
    return found


def _looks_like_image(head: bytes) -> bool:
    signatures = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")
    return head.startswith(signatures) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _image(upload: IO[bytes]) -> Inspected:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(upload, formats=list(IMAGE_FORMATS))
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise unsupported(
                    _("the image is too large (%(pixels)s pixels).") % {"pixels": image.width * image.height}
                )
            image_format = image.format or "PNG"
            image.load()  # decodes it all: a truncated image fails here
            cleaned, thumbnail = _reencoded(image, image_format)
        except (
            UnidentifiedImageError,
            OSError,
            SyntaxError,
            ValueError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
        ) as exc:
            raise unsupported(_("the image cannot be read.")) from exc
    return Inspected(
        kind="image",
        mime=IMAGE_FORMATS[image_format],
        extension="." + image_format.lower().replace("jpeg", "jpg"),
        content=cleaned,
        thumbnail=thumbnail,
        width=image.width,
        height=image.height,
    )


def _reencoded(image: Image.Image, image_format: str) -> tuple[io.BytesIO, bytes]:
    """The image saved again with no metadata (EXIF, XMP, comments), turned as its EXIF said; and a thumbnail."""
    upright = ImageOps.exif_transpose(image) if image_format != "GIF" else image
    cleaned = io.BytesIO()
    options = {"save_all": True} if image_format == "GIF" and getattr(image, "n_frames", 1) > 1 else {}
    if image_format == "JPEG":
        options = {"quality": 92}
    upright.save(cleaned, format=image_format, **options)
    cleaned.seek(0)
    small = upright.convert("RGBA") if upright.mode not in ("RGB", "RGBA") else upright.copy()
    small.thumbnail(THUMBNAIL_SIZE)
    thumbnail = io.BytesIO()
    small.save(thumbnail, format="PNG")
    return cleaned, thumbnail.getvalue()


def _pdf(upload: IO[bytes], max_text_chars: int) -> Inspected:
    upload.seek(max(_length(upload) - 1024, 0))
    if b"%%EOF" not in upload.read():
        raise unsupported(_("the PDF is truncated."))
    upload.seek(0)
    try:
        reader = PdfReader(upload, strict=True)
        if reader.is_encrypted:
            raise unsupported(_("the PDF is encrypted."))
        text = "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise unsupported(_("the PDF cannot be read.")) from exc
    upload.seek(0)
    return Inspected(kind="pdf", mime="application/pdf", extension=".pdf", content=upload, text=text[:max_text_chars])


def _length(upload: IO[bytes]) -> int:
    upload.seek(0, io.SEEK_END)
    return upload.tell()


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a character cut at the end of the sniffed head
    return True


def _decoded(upload: IO[bytes], max_chars: int) -> str:
    """The whole file checked as UTF-8 without NUL, a chunk at a time; its first `max_chars` kept."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    kept: list[str] = []
    count = 0
    upload.seek(0)
    try:
        while chunk := upload.read(1024 * 1024):
            piece = decoder.decode(chunk)
            if "\x00" in piece:
                raise unsupported(_("it is not UTF-8 text."))
            if count < max_chars:
                kept.append(piece[: max_chars - count])
                count += len(kept[-1])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise unsupported(_("it is not UTF-8 text.")) from exc
    finally:
        upload.seek(0)
    return "".join(kept)


def _text(upload: IO[bytes], *, name: str, max_text_chars: int) -> Inspected:
    extension = PurePosixPath(name.lower()).suffix
    upload.seek(0)
    head = upload.read(SNIFF_BYTES)
    if extension in NEVER_TEXT or MARKUP.match(head.lstrip(b"\xef\xbb\xbf")):
        raise unsupported(_("web pages and SVG images are not accepted."))
    if extension in BINARY_EXTENSIONS:
        raise unsupported(_("its content is text, not the %(type)s its name says.") % {"type": extension[1:].upper()})
    text = _decoded(upload, max_text_chars)
    mime = TEXT_TYPES.get(extension, "text/plain")
    return Inspected(
        kind="text",
        mime=mime,
        extension=extension if extension in TEXT_TYPES else ".txt",
        content=upload,
        text=text[:max_text_chars],
    )
