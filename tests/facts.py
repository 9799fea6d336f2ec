"""The made-up fact and its distractors that the shared test corpus holds."""

FACT = "The Zorblax fountain in Quenville sprays purple water every Tuesday at 4 pm."
FACT_QUESTION = "When does the Zorblax fountain in Quenville spray purple water?"
DISTRACTORS = {
    "bread.md": "# Baking bread\n\nKnead the dough for ten minutes. Let it rise until doubled, then bake at 220 C.\n",
    "rivers.txt": "The Danube flows through ten countries and ends in the Black Sea.\n",
    "python.md": "# Python\n\nPython lists are mutable sequences. Tuples are immutable.\n",
}
