"""decode_bytes on realistic short texts in each encoding, and looks_binary on text and binary data."""

from __future__ import annotations

import codecs
import os

import pytest

from ingest.document import LoaderError
from ingest.encoding import decode_bytes, looks_binary

SIMPLIFIED = [
    "人工智能正在改变世界。",
    "我们今天去公园散步，天气非常好。",
    "请在安装之前阅读说明文档，确认系统版本符合要求。如果有问题，请联系管理员。",
    "数据库连接失败，请检查配置文件中的用户名和密码。",
    "你好",
]
TRADITIONAL = [
    "這是一個測試文件，用來檢查繁體中文的編碼是否正確。",
    "台灣的夜市很有名。",
    "今天天氣很好，我們去爬山吧！",
    "你好",
]


@pytest.mark.parametrize("text", SIMPLIFIED)
@pytest.mark.parametrize("encoding", ["gbk", "gb18030"])
def test_simplified_chinese_in_gbk_family(text: str, encoding: str) -> None:
    assert decode_bytes(text.encode(encoding)) == (text, "gb18030")


@pytest.mark.parametrize("text", TRADITIONAL)
def test_traditional_chinese_in_big5(text: str) -> None:
    assert decode_bytes(text.encode("big5")) == (text, "big5")


def test_traditional_characters_in_gbk_stay_gbk() -> None:
    text = "這是一個測試文件"
    assert decode_bytes(text.encode("gbk")) == (text, "gb18030")


def test_chinese_comments_in_mostly_ascii_source() -> None:
    source = "def total(items):\n    # 计算总和\n    return sum(items)\n"
    assert decode_bytes(source.encode("gbk"))[0] == source


@pytest.mark.parametrize("text", ["plain ascii", "naïve café – “quoted”", "中文和English混合。"])
def test_utf8_without_bom(text: str) -> None:
    assert decode_bytes(text.encode("utf-8")) == (text, "utf-8")


def test_utf8_bom_is_stripped() -> None:
    assert decode_bytes(codecs.BOM_UTF8 + "说明：hello".encode()) == ("说明：hello", "utf-8-sig")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_with_bom(encoding: str) -> None:
    text = "第一章 Introduction\n第二章 Details\n"
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE}.get(encoding, b"")
    decoded, _ = decode_bytes(bom + text.encode(encoding))
    assert decoded == text


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom_is_spotted_by_its_nul_bytes(encoding: str) -> None:
    text = "Windows exported this log file.\r\nLine two.\r\n"
    assert decode_bytes(text.encode(encoding)) == (text, encoding)


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Привет, как дела? Всё хорошо, спасибо.", "cp1251"),
        ("こんにちは、今日はいい天気ですね。", "shift_jis"),
    ],
)
def test_other_legacy_encodings_fall_back_to_charset_normalizer(text: str, encoding: str) -> None:
    assert decode_bytes(text.encode(encoding))[0] == text


def test_invalid_bytes_after_a_bom_are_reported() -> None:
    with pytest.raises(LoaderError, match="UTF-8"):
        decode_bytes(codecs.BOM_UTF8 + b"ok \xff\xfe broken")


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00",
        b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00",
        b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00",
        bytes(range(1, 32)) * 20,
        os.urandom(4096) + b"\x00",
    ],
)
def test_binary_data_looks_binary(data: bytes) -> None:
    assert looks_binary(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello\tworld\r\n",
        "中文文本，没有问题。".encode("gbk"),
        "中文".encode("utf-16"),
        "ascii only text".encode("utf-16-le"),
        b"\x1b[31mcoloured log line\x1b[0m\n",
    ],
)
def test_text_does_not_look_binary(data: bytes) -> None:
    assert not looks_binary(data)
