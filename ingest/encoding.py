"""Turn a file's bytes into text: BOMs, UTF-8, then the Chinese legacy encodings, then charset-normalizer."""

from __future__ import annotations

import codecs
from functools import cache

from charset_normalizer import from_bytes

from ingest.document import LoaderError

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_SAMPLE_BYTES = 8192
_ALLOWED_CONTROLS = frozenset(b"\t\n\r\f\b\x1b")
_CJK_ENCODINGS = ("gb18030", "big5")
_MIN_CJK_SCORE = 0.7
_TIE_MARGIN = 0.05
_SCORED_CHARS = 65536


def decode_bytes(data: bytes) -> tuple[str, str]:
    """Decode `data` and name the encoding used; raise LoaderError when no encoding fits."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _strict(data, encoding), encoding
    utf16 = _utf16_without_bom(data)
    if utf16 is not None:
        return data.decode(utf16), utf16
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    chinese = _best_chinese(data)
    if chinese is not None:
        return chinese
    guess = from_bytes(data).best()
    if guess is None:
        raise LoaderError("cannot tell the text encoding; save the file as UTF-8")
    return str(guess), guess.encoding


def looks_binary(data: bytes) -> bool:
    """True when the start of `data` looks like a binary format rather than text in some encoding."""
    sample = data[:_SAMPLE_BYTES]
    if not sample or any(sample.startswith(bom) for bom, _ in _BOMS) or _utf16_without_bom(sample):
        return False
    if b"\x00" in sample:
        return True
    controls = sum(1 for byte in sample if (byte < 32 and byte not in _ALLOWED_CONTROLS) or byte == 127)
    return controls > len(sample) * 0.1


def _strict(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise LoaderError(f"invalid {encoding} text at byte {exc.start}; re-save the file as UTF-8") from exc


def _utf16_without_bom(data: bytes) -> str | None:
    """Spot BOM-less UTF-16 by its NUL bytes, which fall on every other byte in Latin text."""
    sample = data[: _SAMPLE_BYTES - _SAMPLE_BYTES % 2]
    if len(sample) < 4:
        return None
    even_nuls = sample[0::2].count(0) / (len(sample) / 2)
    odd_nuls = sample[1::2].count(0) / (len(sample) / 2)
    if odd_nuls > 0.3 and even_nuls < 0.05:
        encoding = "utf-16-le"
    elif even_nuls > 0.3 and odd_nuls < 0.05:
        encoding = "utf-16-be"
    else:
        return None
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return None
    return encoding


def _best_chinese(data: bytes) -> tuple[str, str] | None:
    """Try GB18030 and Big5 strictly and keep the decoding whose characters are common Chinese ones.

    GB18030 accepts almost any byte string, so a decoding only counts when most of its non-ASCII
    characters are frequent hanzi or CJK punctuation. Near-ties go to GB18030, the more common of the two.
    """
    scored = []
    for encoding in _CJK_ENCODINGS:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        score = _chinese_score(text)
        if score >= _MIN_CJK_SCORE:
            scored.append((score, encoding, text))
    if not scored:
        return None
    best_score = max(score for score, _, _ in scored)
    _, encoding, text = next(item for item in scored if item[0] >= best_score - _TIE_MARGIN)
    return text, encoding


def _chinese_score(text: str) -> float:
    """Share of non-ASCII characters (in the first 64K) that are frequent hanzi or CJK punctuation.

    Any private-use character scores 0: Big5 bytes read as GB18030 land there.
    """
    common = _common_chinese()
    total = hits = 0
    for char in text[:_SCORED_CHARS]:
        if char.isascii():
            continue
        if "\ue000" <= char <= "\uf8ff":
            return 0.0
        total += 1
        hits += char in common
    return hits / total if total else 0.0


@cache
def _common_chinese() -> frozenset[str]:
    """GB2312 level 1 (the 3755 most used simplified hanzi), Big5 level 1 (5401 traditional), punctuation."""
    chars: set[str] = set()
    for lead in range(0xB0, 0xD8):
        chars.update(_decode_pairs("gb2312", lead, range(0xA1, 0xFF)))
    for lead in range(0xA4, 0xC6):
        chars.update(_decode_pairs("big5", lead, [*range(0x40, 0x7F), *range(0xA1, 0xFF)]))
    chars.update(_decode_pairs("big5", 0xC6, range(0x40, 0x7F)))
    for lead in (0xA1, 0xA3):
        chars.update(_decode_pairs("gb2312", lead, range(0xA1, 0xFF)))
    chars.update(_decode_pairs("big5", 0xA1, [*range(0x40, 0x7F), *range(0xA1, 0xFF)]))
    return frozenset(chars)


def _decode_pairs(encoding: str, lead: int, trails: range | list[int]) -> set[str]:
    chars = set()
    for trail in trails:
        try:
            chars.add(bytes((lead, trail)).decode(encoding))
        except UnicodeDecodeError:
            continue
    return chars
