"""Data sets in their published formats, validated, and turned into model inputs.

massive     MASSIVE 1.1 rows (.jsonl, .jsonl.gz, the official .tar.gz), slot markup parsing
fewshot     k examples per intent, seeded, reproducible from saved ids
sgd         SGD / XSGD schema and dialogues, the NLI intent examples, 5 dialogues per service
parallel    alignment pairs (1-4 consecutive turns) from XSGD, line-aligned files or TSV
tatoeba     the XTREME Tatoeba retrieval sets
download    official archives fetched, hash-checked and unpacked atomically
encode      tokenization cached as Arrow, and lazily built NLI pairs
synth       the project's own demo data in all of these formats
"""
