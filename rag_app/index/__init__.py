"""The on-disk index: FAISS vectors, the SQLite store of chunks and files, the manifest, the lexical index."""
