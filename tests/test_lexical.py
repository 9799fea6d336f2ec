"""The BM25 tokenizer (Snowball-stemmed English, character bigrams for Chinese) and the lexical index."""

from __future__ import annotations

from rag_app.index.lexical import TOKENIZER_VERSION, LexicalIndex, cjk_bigrams, question_terms, tokenize


def test_english_is_lower_cased_stemmed_and_free_of_stop_words() -> None:
    assert tokenize("The Running of the Studies, and IT!") == ["run", "studi"]
    assert tokenize("studies") == tokenize("study") == ["studi"]


def test_chinese_runs_become_overlapping_bigrams() -> None:
    assert cjk_bigrams("上下文窗口") == ["上下", "下文", "文窗", "窗口"]
    assert cjk_bigrams("字") == ["字"]
    assert tokenize("GPT-2 的上下文窗口。长江") == ["gpt", "2", "的上", "上下", "下文", "文窗", "窗口", "长江"]


def test_latin_and_digits_touching_chinese_are_split_from_it() -> None:
    # \w matches Han too: before the split "POWER6是IBM于2007年推出" was a single token, found by no question
    assert tokenize("POWER6是IBM于2007年推出") == ["power6", "是", "ibm", "于", "2007", "年推", "推出"]
    found = LexicalIndex.build([1, 2], [tokenize("POWER6是IBM于2007年推出的微处理器"), tokenize("长江全长约6300公里")])
    assert [chunk for chunk, _ in found.search(tokenize("POWER6处理器是哪一年推出的？"), 2)][:1] == [1]


def test_punctuation_and_empty_text_give_no_tokens() -> None:
    assert tokenize("") == []
    assert tokenize("，。！？ ... --- ___") == []


def test_the_version_names_the_tokenizer() -> None:
    assert TOKENIZER_VERSION == "snowball-words+cjk-bigrams-3"


DOCUMENTS = {
    10: "GPT-2 一次最多处理 1024 个 token，这就是它的上下文窗口。",
    11: "GPT-2 的词汇表共有 50,257 个 token。",
    12: "长江全长约 6300 公里，最后在上海注入东海。",
    13: "Mice that ran daily showed improved memory in the studies.",
}


def lexical() -> LexicalIndex:
    return LexicalIndex.build(list(DOCUMENTS), [tokenize(text) for text in DOCUMENTS.values()])


def test_chinese_paraphrase_finds_its_passage() -> None:
    assert lexical().search(tokenize("长江在哪里入海？"), 2)[0][0] == 12
    assert lexical().search(tokenize("GPT-2 的上下文窗口有多大"), 2)[0][0] == 10


def test_english_inflections_match_through_the_stemmer() -> None:
    hits = lexical().search(tokenize("studying memories"), 4)
    assert hits[0][0] == 13 and all(score > 0 for _, score in hits)


def test_unknown_words_and_an_empty_index_return_nothing() -> None:
    assert lexical().search(tokenize("zebra giraffe"), 3) == []
    assert LexicalIndex.build([], []).search(tokenize("长江"), 3) == []


def test_a_saved_index_loads_without_pickle_and_answers_the_same(tmp_path):
    index = LexicalIndex.build(list(DOCUMENTS), [tokenize(text) for text in DOCUMENTS.values()])
    index.save(tmp_path / "lexical")
    loaded = LexicalIndex.load(tmp_path / "lexical")
    for query in ("长江", "mice running memory", "GPT-2 的词汇表"):
        assert loaded.search(tokenize(query), 3) == index.search(tokenize(query), 3) != []


def test_question_terms_leave_out_what_is_asked_for() -> None:
    # "colour" names what is asked; the passage that answers says "green", so it must not dilute relevance
    assert question_terms("What colour is the Vexmoor lighthouse beam?") == ["vexmoor", "lighthous", "beam"]
    assert question_terms("How many years did it take?") == ["take"]
    assert question_terms("长江有多长？") == ["长江"]


def test_chinese_question_terms_are_the_pairs_inside_its_words() -> None:
    """"器一" and "叠了" straddle 编码器|一共|叠|了: a passage that answers holds them only where it repeats the phrase,
    and as the rarest terms they made its coverage of the question look low."""
    terms = question_terms("最初用于机器翻译的 Transformer，编码器一共叠了几层？")
    assert terms == ["最初", "用于", "机器", "器翻", "翻译", "transform", "编码", "码器", "一共"]
    assert question_terms("叠了") == ["叠了"]  # a run with no pair inside a word keeps its pairs


def test_question_terms_leave_out_who_asks() -> None:
    """A passage says "your data" or "Nothing is sent" to "Is my data sent anywhere?": "my" is not what the
    question is about, and its share of the terms would count against the passage that answers."""
    from rag_app.retrieval import term_coverage

    assert question_terms("Is my data sent anywhere?") == ["data", "sent", "anywher"]
    assert question_terms("We don't see our files, what's wrong?") == ["see", "file", "wrong"]
    passage = "Nothing is sent to a remote service: your data stays on your computer."
    assert term_coverage(question_terms("Is my data sent anywhere?"), passage) > term_coverage(
        tokenize("Is my data sent anywhere?"), passage)
    assert "us" in question_terms("What is the US population?")


def test_a_question_term_covers_a_word_of_the_same_stem() -> None:
    """Snowball stems "embedding" to "embed" and "embedder" to "embedd": the guide's "The default embedder ..." must
    cover "Which embedding model is used by default?"; a short word does not stand for a longer one ("sent" is no
    "sentence"), nor a number for another."""
    from rag_app.retrieval import term_coverage

    question = question_terms("Which embedding model is used by default?")
    embedder = term_coverage(question, "The default embedder for English documents is all-MiniLM-L6-v2.")
    assert embedder == term_coverage(question, "The default embedding for English documents is all-MiniLM-L6-v2.")
    assert embedder > term_coverage(question, "The default for English documents is all-MiniLM-L6-v2.") > 0
    assert term_coverage(["sent"], "Each sentence is checked.") == 0.0
    assert term_coverage(["20000"], "About 200000 chunks.") == 0.0
