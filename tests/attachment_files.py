"""Files for the attachment tests, made here: images (with EXIF), PDFs with text, and broken ones."""

import io
import struct
import zlib
from pathlib import Path

from PIL import Image


def png(size: tuple[int, int] = (64, 48), color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def jpeg_with_exif(size: tuple[int, int] = (64, 48)) -> bytes:
    """A JPEG whose EXIF says where it was taken (the camera model stands in for GPS: both are EXIF)."""
    image = Image.new("RGB", size, "blue")
    exif = Image.Exif()
    exif[0x0110] = "SecretCam 3000"  # Model
    exif[0x010E] = "taken at 51.5007 N, 0.1246 W"  # ImageDescription
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def decompression_bomb(side: int = 30_000) -> bytes:
    """A PNG a few hundred bytes long that says it is `side`² pixels: decoded, gigabytes."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024, 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def pdf(text: str = "Quarterly report: revenue grew 12 percent.") -> bytes:
    """A one-page PDF whose page shows `text` (so pypdf extracts it)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def stored_files(root: Path) -> list[str]:
    """Every file under a filesystem storage's root."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())
