"""Retriever on a real small index: modes, fusion, filters, duplicate removal, neighbour merge, reranker."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from rag_app.config import SearchOptions
from rag_app.index.fusion import reciprocal_rank_fusion, weighted_fusion
from rag_app.index.lexical import tokenize
from rag_app.retrieval import Retriever, term_coverage
from tests.backends import fresh_location

BREAD = ("Knead the bread dough for ten minutes until it is smooth and elastic, then let it rise in a warm "
         "place until it has doubled in size.")
# A long file whose paragraphs become separate chunks at a small chunk size, for the neighbour merge.
GLACIER_PARAGRAPHS = [
    "Glaciers form where winter snowfall exceeds summer melt for many years in a row.",
    "The snow compacts into firn and then into dense glacial ice under its own weight.",
    "Glacial ice flows downhill slowly, carving U-shaped valleys and leaving moraines behind.",
    "Tidewater glaciers end in the sea, where icebergs break off in a process called calving.",
    "Quite separately, the town library opens at nine and closes at five on weekdays.",
]
FILES = {
    "kitchen/bread.md": f"# Bread\n\n{BREAD}\n",
    "kitchen/copy_of_bread.md": f"# Bread\n\n{BREAD}\n",  # identical chunks in two files
    "kitchen/bread_upper.txt": f"# bread\n\n{BREAD.upper()}\n",  # same words in other case: a near-copy
    "notes/glaciers.txt": "\n\n".join(GLACIER_PARAGRAPHS) + "\n",
    "code/rivers.py": '"""Rivers."""\nDANUBE_COUNTRIES = 10  # the Danube flows through ten countries\n',
    "notes/chess.txt": "Castling moves the king two squares towards a rook, which then jumps over the king.\n",
}


@pytest.fixture(scope="module")
def retriever(request, backend_kind, tmp_path_factory, embedder) -> Retriever:
    from ingest.pipeline import ingest
    from rag_app.config import ChunkingSettings, IngestOptions
    from rag_app.index import Index

    corpus = tmp_path_factory.mktemp("retrieval_corpus")
    for name, text in FILES.items():
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)
        (corpus / name).write_text(text, encoding="utf-8")
    index = fresh_location(request, backend_kind, tmp_path_factory.mktemp("retrieval_index"))
    options = IngestOptions(chunking=ChunkingSettings(max_tokens=32, overlap_tokens=0))
    report = ingest([corpus], index, embedder, options)
    assert report.ok and len(report.added) == len(FILES)
    opened = Index.open(index, embedder)
    yield Retriever(opened)
    opened.close()


def names(sources) -> list[str]:
    return [Path(source.path).name for source in sources]


# ---- fusion arithmetic -------------------------------------------------------------------------------------


def test_reciprocal_rank_fusion_sums_reciprocal_ranks() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=10)
    assert fused[1] == pytest.approx(1 / 11 + 1 / 12)
    assert fused[2] == pytest.approx(1 / 12)
    assert fused[3] == pytest.approx(1 / 13 + 1 / 11)


def test_weighted_fusion_normalises_each_leg() -> None:
    fused = weighted_fusion([([(1, 0.9), (2, 0.5), (3, 0.1)], 0.25), ([(3, 12.0), (4, 2.0)], 0.75)])
    assert fused == pytest.approx({1: 0.25, 2: 0.125, 3: 0.75, 4: 0.0})


def test_term_coverage_weighs_longer_terms_more() -> None:
    assert term_coverage(tokenize("knead dough"), BREAD) == 1.0
    assert term_coverage(tokenize("tungsten boiling point"), BREAD) == 0.0
    assert 0 < term_coverage(tokenize("knead tungsten"), BREAD) < 1


# ---- search on the real index ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_each_mode_finds_the_passage(retriever: Retriever, mode: str) -> None:
    sources = retriever.search("How does castling move the king?", SearchOptions(k=3, mode=mode))
    assert names(sources)[0] == "chess.txt"
    assert [source.number for source in sources] == list(range(1, len(sources) + 1))


@pytest.mark.parametrize("fusion", ["rrf", "weighted"])
def test_both_fusions_rank_the_passage_first(retriever: Retriever, fusion: str) -> None:
    sources = retriever.search("which countries does the Danube flow through", SearchOptions(k=2, fusion=fusion))
    assert names(sources)[0] == "rivers.py"


def test_path_glob_and_file_type_filters(retriever: Retriever) -> None:
    query = "knead the bread dough"
    in_notes = retriever.search(query, SearchOptions(k=10, path_glob="*/notes/*"))
    assert in_notes and all("/notes/" in source.path for source in in_notes)
    python = retriever.search(query, SearchOptions(k=10, file_types=("py",)))
    assert names(python) == ["rivers.py"]
    markdown_or_text = retriever.search(query, SearchOptions(k=10, file_types=(".MD", "txt")))
    assert markdown_or_text and {Path(s.path).suffix for s in markdown_or_text} <= {".md", ".txt"}


def test_identical_and_near_identical_chunks_come_back_once(retriever: Retriever) -> None:
    """Three bread files hold six chunks (heading + body each): copies and a case-only variant."""
    sources = retriever.search("knead the bread dough until elastic", SearchOptions(k=10, merge_neighbours=False))
    bread = [source.text.lower() for source in sources if "bread" in Path(source.path).name]
    assert len(bread) == 2 and len(set(bread)) == 2, names(sources)
    assert sum("knead" in text for text in bread) == 1


def test_reading_a_few_candidates_gives_the_passages_of_reading_all(retriever: Retriever, monkeypatch) -> None:
    """The backend reads 2 candidates per passage; when copies eat that margin, the search reads them all."""
    from rag_app import retrieval

    queries = ["knead the bread dough until elastic", "how does glacial ice form", "king and rook", "Danube"]
    options = SearchOptions(k=3, merge_neighbours=False)
    requests = []
    search = retriever.index.search
    monkeypatch.setattr(retriever.index, "search", lambda query, request: requests.append(request.rows)
                        or search(query, request))
    few = [retriever.search(query, options) for query in queries]
    assert requests.count(None) == 1, "the six bread chunks (three copies) should have sent one search to read all"
    monkeypatch.setattr(retrieval, "ROWS_PER_PASSAGE", 10**6)
    every = [retriever.search(query, options) for query in queries]
    assert [[(s.path, s.text) for s in hits] for hits in few] == [[(s.path, s.text) for s in hits] for hits in every]
    assert len(few[0]) == 3 and len({source.text.lower() for source in few[0]}) == 3


def test_adjacent_chunks_of_one_file_are_merged(retriever: Retriever) -> None:
    query = "how glacial ice forms from firn and flows downhill"
    apart = retriever.search(query, SearchOptions(k=4, mode="lexical", merge_neighbours=False))
    glacier = [source for source in apart if source.path.endswith("glaciers.txt")]
    assert len(glacier) >= 2
    merged = retriever.search(query, SearchOptions(k=4, mode="lexical"))
    merged_glacier = [source for source in merged if source.path.endswith("glaciers.txt")]
    assert len(merged_glacier) < len(glacier)
    joined = max(merged_glacier, key=lambda source: len(source.text))
    assert "firn" in joined.text and "downhill" in joined.text
    assert joined.chunk.start_line < joined.chunk.end_line
    assert [source.number for source in merged] == list(range(1, len(merged) + 1))


def test_k_and_bad_options(retriever: Retriever) -> None:
    assert len(retriever.search("glaciers", SearchOptions(k=1))) == 1
    assert retriever.search("   ") == []
    with pytest.raises(ValueError, match="k and candidates must be at least 1"):
        SearchOptions(k=0)


def test_relevance_comes_from_stored_vectors_not_re_embedding(retriever: Retriever, monkeypatch) -> None:
    embedded: list[str] = []
    original = retriever.index.embedder.embed_documents

    def counting(texts):
        embedded.extend(texts)
        return original(texts)

    monkeypatch.setattr(retriever.index.embedder, "embed_documents", counting)
    sources = retriever.search("castling the king and a rook", SearchOptions(k=3))
    assert len(embedded) <= 1, "search embedded passages again"
    assert names(sources)[0] == "chess.txt" and sources[0].relevance > sources[-1].relevance


# ---- the optional cross-encoder ----------------------------------------------------------------------------


def test_cross_encoder_reranker_orders_by_its_scores(retriever: Retriever) -> None:
    """The bundled MiniLM folder loads as a CrossEncoder (with a randomly initialised head): the code path."""
    from rag_app.models.embedder import bundled_minilm_path
    from rag_app.rerank import CrossEncoderReranker

    reranker = CrossEncoderReranker(str(bundled_minilm_path()), device="cpu")
    options = SearchOptions(k=4, merge_neighbours=False, rerank_depth=6)
    plain = retriever.search("glaciers and icebergs", options)
    ranked = Retriever(retriever.index, reranker).search("glaciers and icebergs", options)
    expected = reranker.model.predict([("glaciers and icebergs", source.text) for source in ranked])
    assert [source.score for source in ranked] == pytest.approx([float(value) for value in expected])
    assert [source.score for source in ranked] == sorted((source.score for source in ranked), reverse=True)
    deeper = retriever.search("glaciers and icebergs", replace(options, k=6))
    assert {s.chunk.id for s in ranked} <= {s.chunk.id for s in deeper} and len(plain) == len(ranked) == 4


def test_a_missing_reranker_is_a_clear_error(tmp_path: Path) -> None:
    from rag_app.rerank import CrossEncoderReranker

    with pytest.raises((ValueError, OSError), match="reranker|not found|does not appear|exist"):
        CrossEncoderReranker(str(tmp_path / "no-such-model"), device="cpu")


# ---- each leg earns its place in hybrid search ---------------------------------------------------------------

LEGS = {
    "crate.txt": "Stock record XQ-7731-B: one blue crate, lined with straw and stamped with the supplier's seal; the "
                 "loading crew checks it twice before the lorry leaves.",
    "box.txt": "Part number XQ-7713-A ships in a red box from the southern warehouse.",
    "pallet.txt": "Part number ZR-1177-C ships on a wooden pallet from the eastern depot.",
    "tray.txt": "Part number KL-4410-D ships on a plastic tray from the western yard.",
    "benz.txt": "Karl Benz built the earliest automobile, a three-wheeled motor wagon, in 1885.",
    "bicycle.txt": "The first bicycle race on record was held in a Paris park; the winner created a stir.",
    "train.txt": "The first passenger railway carried people who created their own timetables.",
    "templates.txt": "Jinja is a fast, expressive, extensible templating engine. Special placeholders in the "
                     "template allow writing code similar to Python syntax.",
}


@pytest.fixture(scope="module")
def legs(request, backend_kind, tmp_path_factory, embedder) -> Retriever:
    from rag_app.index import Index
    from tests.facts import ingest_files

    location = fresh_location(request, backend_kind, tmp_path_factory.mktemp("legs_index"))
    return Retriever(Index.open(ingest_files(tmp_path_factory, "legs", LEGS, embedder, location), embedder))


def top(retriever: Retriever, query: str, mode: str, k: int = 3) -> list[str]:
    return names(retriever.search(query, SearchOptions(k=k, mode=mode, merge_neighbours=False)))


def test_a_rare_identifier_is_found_by_the_lexical_leg_and_by_hybrid(legs: Retriever) -> None:
    query = "Where does part XQ-7731-B ship from?"
    assert top(legs, query, "lexical")[0] == "crate.txt"
    assert "crate.txt" not in top(legs, query, "dense"), "the dense leg alone must miss it for this test to count"
    assert "crate.txt" in top(legs, query, "hybrid")


def test_a_name_asked_with_a_version_number_finds_the_documents_that_write_it_without(legs: Retriever) -> None:
    """"Jinja2" is no word of the documents, "Jinja" is: the lexical leg reads the name alone, and the passage is
    relevant enough to answer from."""
    assert top(legs, "Jinja2", "lexical")[:1] == ["templates.txt"]
    hits = legs.search("What is Jinja2 used for?")
    assert names(hits)[0] == "templates.txt" and Retriever.is_relevant(hits[:1])


def test_a_paraphrase_is_found_by_the_dense_leg_and_by_hybrid(legs: Retriever) -> None:
    query = "Who created the first car?"
    assert "benz.txt" not in top(legs, query, "lexical", k=7), "the lexical leg alone must miss it for this test"
    assert top(legs, query, "dense")[0] == "benz.txt"
    assert "benz.txt" in top(legs, query, "hybrid")


def test_merged_passages_never_cross_a_pdf_page(tmp_path_factory, embedder) -> None:
    """Page 1 ends and page 2 begins with a line about the zeppelin: the two neighbouring chunks are found together
    but stay two passages, each with its own page and a line range that runs forwards."""
    from ingest.pipeline import ingest
    from rag_app.config import ChunkingSettings, IngestOptions
    from rag_app.index import Index
    from tests.fixtures_files import write_pdf

    folder = tmp_path_factory.mktemp("two_pages")
    first_page = [f"Harbour crane {n} lifts containers of copper ore onto the freighter." for n in range(11)]
    second_page = [f"Dock gantry {n} moves pallets of copper wire into the warehouse." for n in range(11)]
    write_pdf(folder / "book.pdf", [[*first_page, "The zeppelin mast stands at the end of the pier."],
                                    ["A zeppelin moored at the mast at dawn.", *second_page]])
    location = tmp_path_factory.mktemp("two_pages_index") / "index"
    assert ingest([folder], location, embedder, IngestOptions(chunking=ChunkingSettings(max_tokens=64,
                                                                                       overlap_tokens=0))).ok
    with Index.open(location, embedder) as index:
        hits = Retriever(index).search("zeppelin mast", SearchOptions(k=2, mode="lexical"))
    assert sorted(hit.chunk.page for hit in hits) == [1, 2]
    for hit in hits:
        assert hit.chunk.start_line <= hit.chunk.end_line, hit.chunk.label()
        assert ("Harbour" in hit.text) != ("Dock gantry" in hit.text), "a passage crossed the page break"
