"""SentencePiece's Unigram vocabulary learning, deterministic: the built-in model's tokenizer.

`tokenizers`' own UnigramTrainer walks its word counts in the order of a randomly seeded hash map,
so its float sums, and the ids of tied pieces, differ from one process to the next; a tokenizer
that differs gives every token another embedding row, and the whole built-in model differs. This
is the same algorithm (the defaults `tokenizers`' trainer uses) over the words in sorted order.
"""

from __future__ import annotations

import math
from collections import Counter

from xsweep.errors import XsweepError

# SentencePiece's Unigram training, with the defaults `tokenizers`' UnigramTrainer uses. Plain Python
# in one fixed order: a few seconds on the demo corpus's ~1,200 distinct words, and every float is
# summed in the same order in every process.
MAX_PIECE_CHARS = 16
SHRINKING_FACTOR = 0.75  # each pruning round keeps this share of the pieces
EM_SUB_ITERATIONS = 2  # EM steps between pruning rounds
SEED_PIECES = 1_000_000  # most pieces to start from
UNK_PENALTY = 10.0  # an unknown character scores this much below the rarest piece


def unigram_pieces(words: list[tuple[str, int]], size: int) -> list[tuple[str, float]]:
    """At most `size` pieces with their log-probabilities, best first; every character of `words` is one.

    `words`: (pre-tokenized word, count) in a fixed order. Seeds every frequent substring, then
    alternates EM steps and pruning of the pieces whose loss costs the corpus likelihood least, until
    10% above `size`; the final cut keeps the characters and the best-scored pieces.
    """
    chars = sorted({c for word, _ in words for c in word})
    if len(chars) > size:
        raise XsweepError(f"a vocabulary of {size} pieces cannot hold the corpus's {len(chars)} characters",
                          where="backbone", fix="raise vocab_size")
    pieces = _seed_pieces(words)
    desired = size * 11 // 10
    while True:
        for _ in range(EM_SUB_ITERATIONS):
            pieces = _m_step(pieces, _expected_counts(words, pieces))
        if len(pieces) <= desired:
            break
        pruned = _prune(pieces, words, desired)
        if len(pruned) == len(pieces):  # nothing left that can go
            break
        pieces = pruned
    return _finalize(pieces, words, chars, size)


def _seed_pieces(words: list[tuple[str, int]]) -> list[tuple[str, float]]:
    """Every character by count, then the repeated substrings by occurrences x length; log-probabilities.

    As `tokenizers` (a suffix array over the distinct words, one after another): a substring is a seed
    if it occurs twice or more among the distinct words (their counts aside) and is followed by two
    different characters or word ends, the inner nodes of the suffix tree.
    """
    char_counts: Counter[str] = Counter()
    occurrences: Counter[str] = Counter()
    followers: dict[str, set[str]] = {}
    for word, count in words:
        for i, char in enumerate(word):
            char_counts[char] += count
            for j in range(i + 2, min(len(word), i + MAX_PIECE_CHARS) + 1):
                occurrences[word[i:j]] += 1
                followers.setdefault(word[i:j], set()).add(word[j:j + 1])  # "" marks the word's end
    seeds = sorted(char_counts.items(), key=lambda kv: (-kv[1], kv[0]))
    repeated = ((s, n * len(s)) for s, n in occurrences.items() if n > 1 and len(followers[s]) > 1)
    seeds += sorted(repeated, key=lambda kv: (-kv[1], kv[0]))[:max(0, SEED_PIECES - len(seeds))]
    log_total = math.log(sum(n for _, n in seeds))
    return [(s, math.log(n) - log_total) for s, n in seeds]


def _lattice(word: str, index: dict[str, int], unk_id: int) -> list[tuple[int, int, int]]:
    """Every piece occurrence in `word` as (start, end, piece id), by start then end; a character
    no piece covers is `unk_id`, as `tokenizers`' Unigram model does."""
    edges = []
    for i in range(len(word)):
        if word[i] not in index:
            edges.append((i, i + 1, unk_id))
        for j in range(i + 1, min(len(word), i + MAX_PIECE_CHARS) + 1):
            piece_id = index.get(word[i:j])
            if piece_id is not None:
                edges.append((i, j, piece_id))
    return edges


def _scored(pieces: list[tuple[str, float]]) -> tuple[dict[str, int], list[float]]:
    """Piece -> id, and the scores by id with the unknown character's last (id len(pieces))."""
    scores = [score for _, score in pieces]
    return {piece: k for k, (piece, _) in enumerate(pieces)}, scores + [min(scores) - UNK_PENALTY]


def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    return a if b == -math.inf else a + math.log1p(math.exp(b - a))


def _expected_counts(words: list[tuple[str, int]], pieces: list[tuple[str, float]]) -> list[float]:
    """E step: each piece's expected count over all segmentations of the words (forward-backward)."""
    index, scores = _scored(pieces)
    expected = [0.0] * len(scores)
    for word, count in words:
        edges = _lattice(word, index, len(pieces))
        # Edges run by start, so alpha[i] is complete before the edges leaving i, and, backwards, beta[j]
        # before the edges arriving at j.
        alpha = [0.0] + [-math.inf] * len(word)
        for i, j, k in edges:
            alpha[j] = _logaddexp(alpha[j], alpha[i] + scores[k])
        beta = [-math.inf] * len(word) + [0.0]
        for i, j, k in reversed(edges):
            beta[i] = _logaddexp(beta[i], scores[k] + beta[j])
        for i, j, k in edges:
            expected[k] += count * math.exp(alpha[i] + scores[k] + beta[j] - alpha[-1])
    return expected[:-1]


def _m_step(pieces: list[tuple[str, float]], expected: list[float]) -> list[tuple[str, float]]:
    """M step with SentencePiece's Bayesian (digamma) update; drops pieces expected under half a time."""
    kept = [(piece, n) for (piece, _), n in zip(pieces, expected) if n >= 0.5]
    log_total = _digamma(sum(n for _, n in kept))
    return [(piece, _digamma(n) - log_total) for piece, n in kept]


def _digamma(x: float) -> float:
    result = 0.0
    while x < 7.0:
        result -= 1.0 / x
        x += 1.0
    x -= 0.5
    xx2 = 1.0 / (x * x)
    xx4 = xx2 * xx2
    return (result + math.log(x) + xx2 / 24.0 - 7.0 / 960.0 * xx4 + 31.0 / 8064.0 * xx4 * xx2
            - 127.0 / 30720.0 * xx4 * xx4)


def _viterbi(length: int, edges: list[tuple[int, int, int]], scores: list[float]) -> list[int]:
    """The best segmentation's piece ids (the first found among equals)."""
    best = [0.0] + [-math.inf] * length
    back = [(0, 0)] * (length + 1)
    for i, j, k in edges:
        if best[i] + scores[k] > best[j]:
            best[j], back[j] = best[i] + scores[k], (i, k)
    path, j = [], length
    while j > 0:
        j, k = back[j]
        path.append(k)
    return path[::-1]


def _prune(pieces: list[tuple[str, float]], words: list[tuple[str, int]],
           desired: int) -> list[tuple[str, float]]:
    """Drops the pieces whose replacement by their second-best segmentation costs the corpus
    likelihood least, down to SHRINKING_FACTOR of them (not below `desired`)."""
    index, scores = _scored(pieces)
    unk_id = len(pieces)
    always_keep = [True] * len(pieces)
    alternatives: list[list[int]] = [[] for _ in pieces]
    for k, (piece, _) in enumerate(pieces):
        if len(piece) == 1:
            continue
        edges = _lattice(piece, index, unk_id)
        if len(_viterbi(len(piece), edges, scores)) > 1:
            always_keep[k] = False  # not even its own best segmentation
        else:
            alternatives[k] = _viterbi(len(piece), [e for e in edges if e != (0, len(piece), k)], scores)
    freq = [0.0] * len(scores)
    for word, count in words:
        for k in _viterbi(len(word), _lattice(word, index, unk_id), scores):
            freq[k] += count
    total = sum(freq)
    n_words = sum(count for _, count in words)
    kept, candidates = [], []
    for k in range(len(pieces)):
        if freq[k] == 0 and not always_keep[k]:
            continue  # in no best segmentation: free to drop
        if not alternatives[k]:
            kept.append(k)
        elif freq[k] > 0:
            # If piece k went, its uses would go to its alternatives: the log-likelihood lost per word.
            log_total_alt = math.log(total + freq[k] * (len(alternatives[k]) - 1))
            log_prob_alt = sum(math.log(freq[a] + freq[k]) - log_total_alt for a in alternatives[k])
            loss = freq[k] / n_words * (math.log(freq[k]) - math.log(total) - log_prob_alt)
            candidates.append((loss, k))
    candidates.sort(key=lambda c: -c[0])  # stable: equal losses keep the pieces' order
    room = max(desired, int(len(pieces) * SHRINKING_FACTOR)) - len(kept)
    return [pieces[k] for k in kept + [k for _, k in candidates[:max(0, room)]]]


def _finalize(pieces: list[tuple[str, float]], words: list[tuple[str, int]], chars: list[str],
              size: int) -> list[tuple[str, float]]:
    """Every character (those EM dropped just below the rarest piece, commonest first), then the
    best-scored pieces up to `size`; best first, equal scores by piece."""
    scores = dict(pieces)
    floor = min(scores.values())
    char_counts: Counter[str] = Counter()
    for word, count in words:
        for char in word:
            char_counts[char] += count
    dropped = sorted((c for c in chars if c not in scores), key=lambda c: (-char_counts[c], c))
    final = {c: scores[c] for c in chars if c in scores}
    final.update((c, floor - (n + 1) * 1e-4) for n, c in enumerate(dropped))
    for piece, score in sorted(pieces, key=lambda ps: (-ps[1], ps[0])):
        if len(final) == size:
            break
        final.setdefault(piece, score)
    return sorted(final.items(), key=lambda ps: (-ps[1], ps[0]))
