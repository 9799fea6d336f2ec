"""Errors an index raises, each with a message that says what to do."""


class IndexError_(Exception):
    """Base class for index problems (named so it does not shadow the builtin IndexError)."""


class IndexNotFoundError(IndexError_):
    """There is no index at the path."""


class IndexCorruptError(IndexError_):
    """The index exists but cannot be read; it is left untouched."""


class EmbedderMismatchError(IndexError_):
    """The index was built with another embedder than the one asked for."""


class IndexBusyError(IndexError_):
    """Another process is writing to the index."""
