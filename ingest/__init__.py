"""Ingestion: load files, split them into chunks, embed them, and commit them to an index."""
